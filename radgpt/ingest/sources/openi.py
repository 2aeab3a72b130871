"""OpenI / IU chest X-ray XML: NLMCXR_reports.tgz (ecgen-radiology/<n>.xml), a dir, or one .xml.

    from radgpt.ingest.sources import openi
    units = list(openi.units(Path("NLMCXR_reports.tgz"), cfg.ingest))  # driver
    for r in openi.read(units[0], cfg.ingest): ...                     # executor

Each <AbstractText Label="FINDINGS|IMPRESSION|INDICATION|COMPARISON"> becomes Raw.sections[canon
(label)]; MeSH major/minor terms go to Raw.meta["mesh"] ("; "-joined). native_id = the file
number (<n>.xml, = IU CSV uid), else <IUXRId>/<pmcId>, else <uId>; study_id = <uId> ("CXR1").
XML is parsed with defusedxml (or, without it, xml.etree after refusing any DTD/entity): XXE safe.
A tar.gz is not random access: units are ranges of xml-member indices (tar order), and read()
streams the tar and parses only its range. A dir gives one unit per .xml file.
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from radgpt.config import IngestCfg
from radgpt.ingest.sections import canon
from radgpt.ingest.sources.base import Bad, Raw, Unit
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
            if _looks_xml(p):
                return True
            if i >= 20:  # keep detection cheap
                break
    return False


def _xml_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Regular .xml members in tar order (stream mode: headers only, no random access)."""
    for info in tf:
        if info.isfile() and info.name.lower().endswith(".xml"):
            yield info


def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                if f.lower().endswith(".xml"):
                    p = Path(root) / f
                    yield Unit(NAME, str(p), p.relative_to(path).as_posix(), size=p.stat().st_size)
        return
    if not _is_tar(path):  # a single xml file
        yield Unit(NAME, str(path), path.name, size=path.stat().st_size)
        return
    step = cfg.csv_rows_per_unit
    n, size = 0, 0
    with tarfile.open(path, "r|*") as tf:  # streamed: reads headers, skips member data
        for info in _xml_members(tf):
            n += 1
            size += info.size
            if n % step == 0:
                yield Unit(NAME, str(path), None, start=n - step, stop=n, size=size)
                size = 0
    if n % step:
        yield Unit(NAME, str(path), None, start=n - n % step, stop=n, size=size)


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
            for info in _xml_members(tf):
                i += 1
                if i < unit.start:
                    continue
                if i >= stop:
                    break
                if info.size > cfg.max_member_bytes:
                    yield Bad(
                        info.name,
                        "too_large",
                        f"{info.size} bytes > {cfg.max_member_bytes}",
                        size=info.size,
                    )
                    continue
                f = tf.extractfile(info)
                yield parse_xml(info.name, f.read() if f else b"")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
        # truncated/corrupt archive: the rest of this range cannot be read
        yield Bad(f"index {i + 1}", "unreadable", f"{type(e).__name__}: {e}")
