"""MIMIC-CXR free-text reports: a directory or a .zip holding files/pNN/pNNNNNNNN/sNNNNNNNN.txt.

    from radgpt.ingest.sources import mimic
    units = list(mimic.units(Path("mimic-cxr-reports.zip"), cfg.ingest))  # driver
    for r in mimic.read(units[0], cfg.ingest): ...                        # executor

Units: a directory gives one unit per patient folder (member = "files/pNN/p<subject>/", relative
to the input dir; the task lists its report files, so the driver never touches them); a zip gives
index ranges of cfg.csv_rows_per_unit report members (opening a 227k-member zip per file would
re-read its central directory each time). Raw.text holds the report; the ingest job
section-parses it. native_id = study_id = "s<study>", patient_id = "p<subject>".
The official split (mimic-cxr-2.0.0-split.csv[.gz]: dicom_id,study_id,subject_id,split, several
rows per study) is taken from cfg.split_file, else from the input dir (or the zip's dir, or a zip
member); it is loaded once per executor process (cached) into {study id: split}.
Nothing is skipped silently and nothing outside the input is opened (radgpt.ingest.sources.tree):
a file or zip member that is not a report (README.txt, a folder inside a patient folder) is one
`not_a_report` row; a link out of the tree `symlink_outside_root` (never opened), a link loop
`symlink_loop`, a dangling link `dangling_symlink`, a named pipe or device `special_file`; a zip
member with an absolute or ".." path `unsafe_path`, a zip link member `special_file` or
`symlink_outside_root`. Only the split file is left out (it is read by the tasks).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from radgpt.config import IngestCfg
from radgpt.ingest.sources import tree
from radgpt.ingest.sources.base import Bad, Raw, Unit, fault, reads_faults, safe_units
from radgpt.runtime import sha256_bytes

NAME = "mimic"
UNIT_RECORDS = True  # a unit with stop >= 0 holds stop - start records (base.Unit)
REPORT = re.compile(r"(?:^|/)p\d+/p(?P<subject>\d+)/s(?P<study>\d+)\.txt$")
PATIENT = re.compile(r"(?:^|/)p\d+/p\d+/$")  # a patient folder: holds the s<study>.txt reports
SPLIT_NAMES = ("mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-split.csv.gz")
SPLITS = {"train", "validate", "test"}


def detect(path: Path) -> bool:
    """Dir with files/p*/ or a split csv; or a .zip with such members (central directory only)."""
    path = Path(path)
    if path.is_dir():
        files = path / "files"
        if files.is_dir() and any(p.name.startswith("p") for p in files.iterdir()):
            return True
        return any((path / n).is_file() for n in SPLIT_NAMES)
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return any(
                REPORT.search(n) or n.rsplit("/", 1)[-1] in SPLIT_NAMES for n in z.namelist()
            )
    return False


def _split_ref(path: Path, cfg: IngestCfg, names: list[str] | None = None) -> str | None:
    """Where the split file is: cfg.split_file, a sibling file, or '<zip>!<member>'."""
    if cfg.split_file:
        return str(Path(cfg.split_file).expanduser().resolve())
    base = path if path.is_dir() else path.parent
    for n in SPLIT_NAMES:
        if (base / n).is_file():
            return str((base / n).resolve())
    for n in names or []:
        if n.rsplit("/", 1)[-1] in SPLIT_NAMES:
            return f"{path.resolve()}!{n}"
    return None


def _zip_members(z: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members that are records, in a stable order (sorted by name; unit index ranges refer
    to it): every member but folders and the split file."""
    infos = (
        i
        for i in z.infolist()
        if not i.is_dir() and i.filename.rsplit("/", 1)[-1] not in SPLIT_NAMES
    )
    return sorted(infos, key=lambda i: i.filename)


def _tree_units(root: Path, cfg: IngestCfg, split: str | None) -> Iterator[Unit]:
    """A unit per patient folder ("files/p10/p10000032/", sorted), a fault unit per other entry;
    reads folder entries only (the tasks list, size-check and read the report files)."""
    root_real = os.path.realpath(root)

    def walk(folder: str, rel: str, ancestors: tuple[str, ...]) -> Iterator[Unit]:
        for e in tree.children(folder, root_real):
            down = tree.into(e, ancestors) if e.kind == tree.DIR else e
            if isinstance(down, tuple) and PATIENT.search(f"{rel}{e.name}/"):
                yield Unit(NAME, str(root), f"{rel}{e.name}/", extra=split)
            elif isinstance(down, tuple):
                yield from walk(e.path, f"{rel}{e.name}/", down)
            elif down.kind == tree.FILE and not (rel == "" and e.name in SPLIT_NAMES):
                detail = "not a report file (files/pNN/p<subject>/s<study>.txt)"
                yield fault(NAME, e.path, rel + e.name, "not_a_report", detail, size=e.size)
            elif down.kind != tree.FILE:
                yield fault(NAME, e.path, rel + e.name, down.kind, down.detail)

    yield from walk(str(root), "", (root_real,))


@safe_units(NAME)
def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    if path.is_dir():  # one unit per patient folder; the task lists its s<study>.txt files
        yield from _tree_units(path, cfg, _split_ref(path, cfg))
        return
    with zipfile.ZipFile(path) as z:
        infos = _zip_members(z)
        split = _split_ref(path, cfg, z.namelist())
    step = cfg.csv_rows_per_unit
    for a in range(0, len(infos), step):
        b = min(a + step, len(infos))
        size = sum(i.file_size for i in infos[a:b])
        yield Unit(NAME, str(path), None, start=a, stop=b, size=size, extra=split)


@functools.lru_cache(maxsize=4)
def load_split(ref: str) -> dict[str, str]:
    """{"s<study>": split} from a split csv path or '<zip>!<member>' (cached per process).

    Arrow's CSV reader: the real file has ~377k rows, and every executor process loads it once
    (csv.DictReader took 0.5-1 s per 180k rows, 4-7x Arrow's time)."""
    from pyarrow import csv as pcsv

    if "!" in ref and not Path(ref).exists():
        zpath, member = ref.split("!", 1)
        with zipfile.ZipFile(zpath) as z:
            data = z.read(member)
        src = io.BytesIO(gzip.decompress(data) if member.endswith(".gz") else data)
    else:
        src = ref  # Arrow decompresses by the .gz suffix
    opts = pcsv.ConvertOptions(column_types={"study_id": pa.string(), "split": pa.string()})
    t = pcsv.read_csv(src, convert_options=opts)
    missing = {"study_id", "split"} - set(t.column_names)
    if missing:
        raise ValueError(f"split file {ref} lacks columns {sorted(missing)}")
    t = t.filter(pc.is_in(t["split"], pa.array(sorted(SPLITS))))
    study = pc.utf8_ltrim(pc.utf8_trim_whitespace(t["study_id"]), characters="s")
    split = t["split"].combine_chunks().dictionary_encode()  # 3 names, one small int a row
    names = split.dictionary.to_pylist()
    ids = ("s" + s for s in study.to_numpy(zero_copy_only=False))  # numpy: 3x to_pylist's speed
    return dict(zip(ids, map(names.__getitem__, split.indices.to_numpy().tolist()), strict=True))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:  # not Path(path).read_bytes(): one Path per report costs ~5 us
        return f.read()


def _one(name: str, size: int, data_fn, split: dict[str, str] | None, cfg: IngestCfg) -> Raw | Bad:
    """One report member: size check before reading, then decode, then Raw."""
    m = REPORT.search(name)
    if size > cfg.max_member_bytes:
        return Bad(
            name, "too_large", f"{size} bytes > max_member_bytes={cfg.max_member_bytes}", size=size
        )
    try:
        data = data_fn()
    except OSError as e:
        return Bad(name, "unreadable", f"{type(e).__name__}: {e}", size=size)
    sha = sha256_bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return Bad(name, "bad_encoding", f"not UTF-8 at byte {e.start}", sha, len(data))
    if not text.strip():
        return Bad(name, "no_text", "empty report", sha, len(data))
    study = f"s{m['study']}"
    return Raw(
        native_id=study,
        member=name,
        sha256=sha,
        text=text,
        patient_id=f"p{m['subject']}",
        study_id=study,
        split=(split or {}).get(study),
    )


def _folder_entry(unit: Unit, e: tree.Entry, split, cfg: IngestCfg) -> Raw | Bad:
    rel = unit.member + e.name
    if e.kind == tree.FILE and REPORT.search(rel):
        item = _one(rel, e.size, functools.partial(_read, e.path), split, cfg)
    elif e.kind == tree.FILE:
        item = Bad(rel, "not_a_report", "not a report file (s<study>.txt)", size=e.size)
    elif e.kind == tree.DIR:
        item = Bad(rel + "/", "not_a_report", "a folder inside a patient folder; not walked")
    else:
        item = Bad(rel, e.kind, e.detail)
    item.uri = e.path  # source_uri: the file itself
    return item


def _zip_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, split, cfg: IngestCfg) -> Raw | Bad:
    name, size = info.filename, info.file_size
    link = None
    if stat.S_ISLNK(info.external_attr >> 16):  # a link's target is its data: small, or refused
        try:
            link = _zread(z, info).decode("utf-8", "replace") if size <= 4096 else "/"
        except OSError as e:
            return Bad(name, "unreadable", f"{type(e).__name__}: {e}", size=size)
    problem = tree.member_problem(name, link)
    if problem:
        return Bad(name, *problem, size=size)
    if not REPORT.search(name):
        detail = "not a report member (files/pNN/p<subject>/s<study>.txt)"
        return Bad(name, "not_a_report", detail, size=size)
    return _one(name, size, functools.partial(_zread, z, info), split, cfg)


@reads_faults
def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    try:
        split = load_split(unit.extra) if unit.extra else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        # a broken split file is a configuration problem, not bad data: fail the task loudly
        raise ValueError(f"cannot read MIMIC split file {unit.extra}: {e}") from e
    if unit.member is not None:  # a patient folder of a directory tree
        d = os.path.join(unit.uri, unit.member)
        try:  # links are checked against the tree's root: nothing outside it is opened
            entries = tree.children(d, os.path.realpath(unit.uri))
        except OSError as e:
            yield Bad(unit.member, "unreadable", f"{type(e).__name__}: {e}", uri=d)
            return
        for e in entries:
            yield _folder_entry(unit, e, split, cfg)
        return
    try:
        z = zipfile.ZipFile(unit.uri)
    except (OSError, zipfile.BadZipFile) as e:
        yield Bad(None, "unreadable", f"{type(e).__name__}: {e}")
        return
    with z:
        infos = _zip_members(z)
        stop = len(infos) if unit.stop < 0 else unit.stop
        for info in infos[unit.start : stop]:
            yield _zip_member(z, info, split, cfg)


def _zread(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return z.read(info)
    except (zipfile.BadZipFile, zlib.error) as e:  # corrupt member: unreadable, not a crash
        raise OSError(str(e)) from e
