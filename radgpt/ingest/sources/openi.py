"""OpenI / IU chest X-ray XML: NLMCXR_reports.tgz (ecgen-radiology/<n>.xml), a dir, or one .xml.

    from radgpt.ingest.sources import openi
    units = list(openi.units(Path("NLMCXR_reports.tgz"), cfg.ingest))  # driver
    for r in openi.read(units[0], cfg.ingest): ...                     # executor

Each <AbstractText Label="FINDINGS|IMPRESSION|INDICATION|COMPARISON"> becomes Raw.sections[canon
(label)]; MeSH major/minor terms go to Raw.meta["mesh"] ("; "-joined). native_id = the file
number (<n>.xml, = IU CSV uid), else <IUXRId>/<pmcId>, else <uId>; study_id = <uId> ("CXR1").
XML is parsed with defusedxml (or, without it, xml.etree after refusing any DTD/entity): XXE safe.
A tar.gz is not random access: units are ranges of member indices (tar order; every member but
folders is a record), and read() streams the tar and parses only its range. A dir gives one unit
per .xml file. Nothing is skipped silently, nothing is followed out of the input
(radgpt.ingest.sources.tree): a member or file that is not .xml is `not_a_report`; a member with an
absolute or ".." path `unsafe_path`; a link member `symlink_outside_root` (pointing out) or
`special_file` (never followed), as are device and FIFO members; in a dir, links out of it,
dangling links, loops and special files likewise. A tar that ends early or is corrupt gives its
members, then one `truncated`/`unreadable` row for the rest (on the driver too: units() counts
that row, so counts agree).
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from radgpt.config import IngestCfg
from radgpt.ingest.sections import canon
from radgpt.ingest.sources import tree
from radgpt.ingest.sources.base import Bad, Raw, Unit, fault, reads_faults, safe_units
from radgpt.runtime import sha256_bytes

try:  # defusedxml refuses DTDs, entity expansion and external references
    from defusedxml import ElementTree as ET
    from defusedxml.common import DefusedXmlException

    def _xml(data: bytes):
        return ET.fromstring(data, forbid_dtd=True)

except ImportError:  # pragma: no cover - defusedxml is normally installed
    import xml.etree.ElementTree as ET

    class DefusedXmlException(ValueError):
        pass

    def _xml(data: bytes):
        if re.search(rb"<!(DOCTYPE|ENTITY)", data[:4096], re.I):
            raise DefusedXmlException("DTD/entity declarations are refused")
        return ET.fromstring(data)


NAME = "openi"
UNIT_RECORDS = True  # a unit with stop >= 0 holds stop - start records (base.Unit)
TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar")


def _is_tar(path: Path) -> bool:
    return path.name.lower().endswith(TAR_SUFFIXES)


def _looks_xml(path: Path) -> bool:
    """An OpenI-style xml: <eCitation> or <AbstractText> in its first 4 KB."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"<eCitation" in head or b"<AbstractText" in head


def detect(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        if _is_tar(path):
            return True
        return path.suffix.lower() == ".xml" and _looks_xml(path)
    if path.is_dir():
        for i, p in enumerate(path.rglob("*.xml")):
            if p.is_file() and not p.is_symlink() and _looks_xml(p):  # no FIFO, no link out
                return True
            if i >= 20:  # keep detection cheap
                break
    return False


TAR_ERRORS = (OSError, tarfile.TarError, EOFError, zlib.error)


def _tar_error(e: BaseException) -> tuple[str, str]:
    ended = isinstance(e, EOFError) or "unexpected end" in str(e)
    return ("truncated" if ended else "unreadable"), f"{type(e).__name__}: {e}"[:300]


def _records(tf: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo | None, tuple | None]]:
    """(member, None) for every member but folders, in tar order (stream mode: headers only);
    then (None, (reason, detail)) when the archive ends early or is corrupt: one more record."""
    try:
        for info in tf:
            if not info.isdir():
                yield info, None
    except TAR_ERRORS as e:
        yield None, _tar_error(e)


def _member_problem(info: tarfile.TarInfo) -> tuple[str, str] | None:
    link = info.linkname if info.issym() or info.islnk() else None
    kind = ""
    if link is None and not info.isfile():
        kind = "FIFO" if info.isfifo() else "device" if info.ischr() or info.isblk() else "special"
    return tree.member_problem(info.name, link, kind) or (
        None if info.name.lower().endswith(".xml") else ("not_a_report", "not an .xml member")
    )


@safe_units(NAME)
def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    if path.is_dir():
        for rel, e in tree.files(str(path)):
            if e.kind == tree.FILE and e.name.lower().endswith(".xml"):
                yield Unit(NAME, e.path, rel, 0, 1, size=e.size)
            elif e.kind == tree.FILE:
                yield fault(NAME, e.path, rel, "not_a_report", "not an .xml file", size=e.size)
            else:
                yield fault(NAME, e.path, rel, e.kind, e.detail)
        return
    if not _is_tar(path):  # a single xml file
        yield Unit(NAME, str(path), path.name, 0, 1, path.stat().st_size)
        return
    step = cfg.csv_rows_per_unit
    n, size = 0, 0
    with tarfile.open(path, "r|*") as tf:  # streamed: reads headers, skips member data
        for info, _ in _records(tf):
            n += 1
            size += info.size if info is not None else 0
            if n % step == 0:
                yield Unit(NAME, str(path), None, start=n - step, stop=n, size=size)
                size = 0
    if n % step:
        yield Unit(NAME, str(path), None, start=n - n % step, stop=n, size=size)
    if n == 0:
        yield fault(NAME, str(path), None, "empty_file", "no members")


def _text(el) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _id(root, tag: str) -> str | None:
    el = root.find(f".//{tag}")
    v = el.get("id") if el is not None else None
    return v.strip() if v and v.strip() else None


def parse_xml(name: str, data: bytes) -> Raw | Bad:
    """One ecgen-radiology XML document -> Raw, or Bad("bad_xml") (message never quotes text)."""
    sha = sha256_bytes(data)
    try:
        root = _xml(data)
    except (ET.ParseError, DefusedXmlException, ValueError) as e:
        return Bad(name, "bad_xml", f"{type(e).__name__}: {e}"[:300], sha, len(data))
    sections: dict[str, str] = {}
    for el in root.iter("AbstractText"):
        label, txt = el.get("Label") or el.get("label"), _text(el)
        if label and txt:
            key = canon(label)
            sections[key] = f"{sections[key]}\n{txt}" if key in sections else txt
    mesh = [_text(t) for m in root.iter("MeSH") for t in m if t.tag in ("major", "minor")]
    stem = re.sub(r"\.xml$", "", name.rsplit("/", 1)[-1], flags=re.I)
    uid = _id(root, "uId")
    native = stem if stem.isdigit() else _id(root, "IUXRId") or _id(root, "pmcId") or uid
    if not native:
        return Bad(
            name, "bad_xml", "no report id (file number, IUXRId, pmcId or uId)", sha, len(data)
        )
    meta = {"mesh": "; ".join(t for t in mesh if t)} if any(mesh) else {}
    images = [i.get("id") for i in root.iter("parentImage") if i.get("id")]
    if images:
        meta["images"] = "; ".join(images)
    if uid:
        meta["uid"] = uid
    return Raw(
        native_id=native, member=name, sha256=sha, sections=sections, study_id=uid, meta=meta
    )


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo, cfg: IngestCfg) -> Raw | Bad:
    problem = _member_problem(info)
    if problem:
        return Bad(info.name, *problem, size=info.size or None)
    if info.size > cfg.max_member_bytes:
        return Bad(
            info.name, "too_large", f"{info.size} bytes > {cfg.max_member_bytes}", size=info.size
        )
    try:
        f = tf.extractfile(info)
        data = f.read() if f else b""
    except TAR_ERRORS as e:  # its data cut off: this member (the next record says the rest)
        return Bad(info.name, *_tar_error(e), size=info.size)
    return parse_xml(info.name, data)


@reads_faults
def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    if unit.member is not None:  # one xml file
        p = Path(unit.uri)
        try:
            size = p.stat().st_size
            if size > cfg.max_member_bytes:
                yield Bad(
                    unit.member, "too_large", f"{size} bytes > {cfg.max_member_bytes}", size=size
                )
                return
            data = p.read_bytes()
        except OSError as e:
            yield Bad(unit.member, "unreadable", f"{type(e).__name__}: {e}")
            return
        yield parse_xml(unit.member, data)
        return
    stop = unit.stop if unit.stop >= 0 else float("inf")
    i = -1
    try:
        with tarfile.open(unit.uri, "r|*") as tf:
            for i, (info, error) in enumerate(_records(tf)):
                if i >= stop:
                    break
                if i < unit.start:
                    continue
                yield Bad(f"index {i}", *error) if error else _tar_member(tf, info, cfg)
    except TAR_ERRORS as e:  # opening it (units() found it readable: the file changed)
        yield Bad(f"index {i + 1}" if i >= 0 else None, *_tar_error(e))
