"""CSV exports (.csv / .csv.gz): one report per row, columns mapped by cfg.csv (CsvMapCfg).

    from radgpt.ingest.sources import csvx
    units = list(csvx.units(Path("indiana_reports.csv"), cfg.ingest))  # driver: counts rows
    for r in csvx.read(units[0], cfg.ingest): ...                     # executor

The defaults fit IU indiana_reports.csv (uid, MeSH, Problems, image, indication, comparison,
findings, impression). A mapped column missing from the header is a ValueError at units() time.
Units are ranges of cfg.csv_rows_per_unit data rows; the driver streams the file through the csv
module to count records, so quoted multi-line fields are one row. Raw.member = data-row index
(0-based, header excluded; blank lines are not rows). Raw.sha256 = sha256 of the row's raw bytes.
Rows are decoded as UTF-8 one by one: undecodable bytes quarantine only their row (bad_encoding).
Raw.sections holds the non-empty mapped section columns; when findings is empty and cfg.csv.text is
mapped, the free-text column goes to Raw.text (use sections.merge(text, sections)).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from radgpt.config import IngestCfg
from radgpt.ingest.sources.base import Bad, Raw, Unit
from radgpt.runtime import sha256_bytes

NAME = "csv"
SECTION_COLS = ("findings", "impression", "indication", "comparison")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long reports; size is capped per row below


def detect(path: Path) -> bool:
    n = Path(path).name.lower()
    return Path(path).is_file() and (n.endswith(".csv") or n.endswith(".csv.gz"))


def _rows(path: str | Path) -> Iterator[tuple[list[str], bytes]]:
    """(fields, raw bytes) per CSV record, header first. Lines are decoded with surrogateescape so
    that bad bytes survive to be reported per row; the raw bytes re-encode exactly."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        buf: list[str] = []

        def lines() -> Iterator[str]:
            for b in f:  # binary lines end at b"\n"; "\r\n" stays inside the line
                s = b.decode("utf-8", "surrogateescape")
                buf.append(s)
                yield s

        first = True
        for fields in csv.reader(lines()):
            raw = "".join(buf).encode("utf-8", "surrogateescape")
            buf.clear()
            if first and fields:
                fields[0] = fields[0].removeprefix("\ufeff")  # UTF-8 BOM
                first = False
            yield fields, raw


def _mapping(cfg: IngestCfg) -> dict[str, str]:
    """canonical field -> column name, for every mapped (non-None) column."""
    return {k: v for k, v in cfg.csv.model_dump().items() if v is not None}


def _header(path: Path, cfg: IngestCfg, header: list[str]) -> dict[str, int]:
    cols = {c.strip(): i for i, c in enumerate(header)}
    missing = [f"{k}={v!r}" for k, v in _mapping(cfg).items() if v not in cols]
    if missing:
        raise ValueError(
            f"{path}: CSV column(s) {', '.join(missing)} mapped by ingest.csv not in the header "
            f"{sorted(cols)}; fix ingest.csv.<field> (set optional ones to null)"
        )
    return cols


def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    it = _rows(path)
    try:
        header, _ = next(it)
    except StopIteration:
        raise ValueError(f"{path}: empty CSV file (no header)") from None
    except csv.Error as e:
        raise ValueError(f"{path}: unreadable CSV header: {e}") from None
    _header(path, cfg, header)
    n, step = 0, cfg.csv_rows_per_unit
    try:
        for fields, _ in it:
            n += bool(fields)  # blank lines are not rows
    except csv.Error:
        # a broken record stops the csv module: it counts as one row (read() quarantines it as
        # bad_csv); rows after it are not listed
        n += 1
    size = path.stat().st_size
    for a in range(0, n, step):
        yield Unit(NAME, str(path), None, start=a, stop=min(a + step, n), size=size)


def _time(s: str) -> dt.datetime | None:
    """ISO date/time -> aware UTC (naive = UTC); None when unparseable."""
    try:
        t = dt.datetime.fromisoformat(s.strip())
    except ValueError:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def row_to_raw(
    i: int, fields: list[str], raw: bytes, cols: dict[str, int], cfg: IngestCfg
) -> Raw | Bad:
    """One CSV record -> Raw, or Bad with a reason (never quoting the row)."""
    member, sha = str(i), sha256_bytes(raw)
    if len(raw) > cfg.max_member_bytes:
        return Bad(member, "too_large", f"{len(raw)} bytes > {cfg.max_member_bytes}", sha, len(raw))
    if len(fields) != len(cols):
        return Bad(
            member, "bad_csv", f"{len(fields)} fields, header has {len(cols)}", sha, len(raw)
        )
    bad = [c for c, j in cols.items() if _SURROGATE.search(fields[j])]
    if bad:
        return Bad(member, "bad_encoding", f"not UTF-8 in column(s) {bad}", sha, len(raw))
    m = _mapping(cfg)

    def get(key: str) -> str:
        return fields[cols[m[key]]].strip() if key in m else ""

    native = get("id")
    if not native:
        return Bad(member, "bad_csv", f"empty id column {m['id']!r}", sha, len(raw))
    sections = {k: get(k) for k in SECTION_COLS if get(k)}
    text = get("text") if not sections.get("findings") and get("text") else None
    meta = {"mesh": get("mesh")} if get("mesh") else {}
    when = get("exam_time")
    t = _time(when) if when else None
    if when and t is None:
        meta["exam_time_unparsed"] = "1"  # flag only: the value may be identifying
    return Raw(
        native_id=native,
        member=member,
        sha256=sha,
        text=text,
        sections=sections,
        patient_id=get("patient_id") or None,
        study_id=get("study_id") or None,
        exam_time=t,
        exam=get("exam") or None,
        meta=meta,
    )


def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    stop = unit.stop if unit.stop >= 0 else sys.maxsize
    it = _rows(unit.uri)
    header, _ = next(it)
    cols = _header(Path(unit.uri), cfg, header)  # a mapping problem is a config error: raise
    i = -1
    try:
        for fields, raw in it:
            if not fields:
                continue
            i += 1
            if i < unit.start:
                continue
            if i >= stop:
                break
            yield row_to_raw(i, fields, raw, cols, cfg)
    except (csv.Error, OSError, EOFError) as e:
        # csv.Error stops the reader: this row is quarantined, as units() counted it
        if unit.start <= i + 1 < stop:
            yield Bad(str(i + 1), "bad_csv", f"{type(e).__name__}: {e}"[:300])
