"""CSV exports (.csv / .csv.gz): one report per row, columns mapped by cfg.csv (CsvMapCfg).

    from radgpt.ingest.sources import csvx
    units = list(csvx.units(Path("indiana_reports.csv"), cfg.ingest))  # driver: counts rows
    for r in csvx.read(units[0], cfg.ingest): ...                     # executor

The defaults fit IU indiana_reports.csv (uid, MeSH, Problems, image, indication, comparison,
findings, impression). Units are ranges of cfg.csv_rows_per_unit data rows; the driver and the
tasks split the file into records with the same function (`records`), so quoted multi-line fields
are one row and the driver's count and read() agree. Raw.member = data-row index (0-based, header
excluded; blank lines are not rows). Raw.sha256 = sha256 of the row's raw bytes.
A broken quote does not swallow the file: when a quoted field that runs over a line end meets a
quote followed by something other than a delimiter, or the end of the file, the row that opened it
is quarantined alone (bad_csv) and the lines after it are split again. Rows are streamed with a
cap (cfg.max_member_bytes): a row over it is `too_large`, never held whole.
Whole-file problems are one quarantine row each, never a failed run: an empty file (`empty_file`),
a header that lacks a mapped column (`bad_header`: per file, the other files go on; the row names
the missing ingest.csv mapping, never the header's text), a gzip file that ends early (`truncated`:
its last record). Rows are decoded as UTF-8 one by one: undecodable bytes quarantine only their row
(bad_encoding). Raw.sections holds the non-empty mapped section columns; when findings is empty and
cfg.csv.text is mapped, the free-text column goes to Raw.text (use sections.merge(text, sections)).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from radgpt.config import IngestCfg
from radgpt.ingest.sources.base import (
    Bad,
    Raw,
    Unit,
    fault,
    guarded,
    reads_faults,
    row_share,
    safe_units,
)
from radgpt.ingest.sources.stream import STREAM_ERRORS, open_bytes, stream_error, tokens
from radgpt.runtime import sha256_bytes

NAME = "csv"
UNIT_RECORDS = True  # a unit with stop >= 0 holds stop - start records (base.Unit)
SECTION_COLS = ("findings", "impression", "indication", "comparison")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long reports; size is capped per row below
log = logging.getLogger(__name__)
# one record: (raw bytes | None when over the cap, size, (reason, detail) | None, start offset)
Record = tuple[bytes | None, int, tuple[str, str] | None, int]


def detect(path: Path) -> bool:
    n = Path(path).name.lower()
    return Path(path).is_file() and (n.endswith(".csv") or n.endswith(".csv.gz"))


def _scan(line: bytes, inq: bool, strict: bool = False) -> tuple[bool, bool]:
    """(inside a quoted field at the end of this physical line, broken), starting inside one or
    not; the csv module's quoting (a quote opens a field only at its start, "" is a quote).
    broken (strict only): a quote that closes a field and is followed by neither a delimiter nor
    the line end: inside a multi-line field that means its opening quote was never closed."""
    if not inq and b'"' not in line:
        return False, False
    i = 0
    while True:
        if inq:
            j = line.find(b'"', i)
            if j < 0:
                return True, False
            if line.startswith(b'"', j + 1):
                i = j + 2
                continue
            inq, i = False, j + 1
            c = line[i : i + 1]
            if c in (b"", b"\r"):
                return False, False
            if c != b",":
                if strict:
                    return False, True
                i = line.find(b",", i)  # non-strict: the field goes on unquoted
                if i < 0:
                    return False, False
            i += 1
        if line.startswith(b'"', i):  # at a field start
            inq, i = True, i + 1
            continue
        i = line.find(b",", i)
        if i < 0:
            return False, False
        i += 1


def records(f: BinaryIO, cap: int, start: int = 0) -> Iterator[Record]:
    """Every CSV record of f, the header first (blank lines are not records); see the docstring.
    Memory: the lines of one record, up to `cap`; a longer quoted field is scanned without being
    kept, and when it turns out broken the lines after its first are read again (f.seek).
    start: f's position, a record's first byte (the splitter keeps no state across records)."""
    toks, back = tokens(f, cap, start=start), deque()
    while True:
        t = back.popleft() if back else next(toks, None)
        if t is None:
            return
        if t.error:
            yield None, t.size, t.error, t.start
            return
        if t.data in (b"", b"\r"):
            continue
        # a line over the cap cannot be scanned: the parity of its quotes stands in
        inq = _scan(t.data, False)[0] if t.data is not None else t.quotes % 2 == 1
        size, group, held, resume, broken = t.size + len(t.term), [], t.data is not None, -1, ""
        while inq:
            u = back.popleft() if back else next(toks, None)
            if u is None:
                broken = "reaches the end of the file"
                break
            if u.error:  # the stream ends inside the field: the rest is one truncated record
                yield None, size + u.size, u.error, t.start
                return
            resume = u.start if resume < 0 else resume
            size += u.size + len(u.term)
            held = held and u.data is not None and size <= cap
            if held:
                group.append(u)
            else:
                group.clear()
            if u.data is None:
                inq = u.quotes % 2 == 0
            else:
                inq, bad = _scan(u.data, True, strict=True)
                if bad:  # this line too is split again
                    broken = "meets a quote followed by neither a delimiter nor a line end"
                    break
        line = None if t.data is None else t.data + t.term
        if broken:
            detail = f"the quoted field opened in this row {broken}: row quarantined, the lines after it read again"
            yield line, t.size + len(t.term), ("bad_csv", detail), t.start
            if held:
                back.extendleft(reversed(group))
            elif resume >= 0:  # not kept (over the cap): read them again
                back.clear()
                f.seek(resume)
                toks = tokens(f, cap, start=resume)
            continue
        if line is not None and held and size <= cap:
            yield line + b"".join(g.data + g.term for g in group), size, None, t.start
        else:
            yield None, size, None, t.start


def _fields(raw: bytes) -> list[str]:
    """The fields of one record's bytes (csv.Error when they are not one CSV record). Bytes that
    are not UTF-8 survive as surrogates, to be reported per row."""
    text = raw.decode("utf-8", "surrogateescape")
    lines = [ln + "\n" for ln in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    rows = [r for r in csv.reader(ln for ln in lines if ln) if r]
    if len(rows) != 1:
        raise csv.Error(f"{len(rows)} records where one was expected")
    return rows[0]


def _mapping(cfg: IngestCfg) -> dict[str, str]:
    """canonical field -> column name, for every mapped (non-None) column."""
    return {k: v for k, v in cfg.csv.model_dump().items() if v is not None}


def _header(first: Record | None, cfg: IngestCfg) -> dict[str, int] | tuple[str, str]:
    """{column: index} from the header record, or (reason, detail): empty_file, bad_header,
    truncated. The detail names the ingest.csv mapping, never the header's text (a file without
    a header has a report as its first row)."""
    if first is None:
        return "empty_file", "no header row (empty file)"
    raw, size, problem, _ = first
    if problem:
        return problem
    if raw is None:
        return "bad_header", f"header row of {size} bytes > {cfg.max_member_bytes}"
    try:
        header = _fields(raw)
    except csv.Error as e:
        return "bad_header", f"the header row is not a CSV record: {e}"
    header[0] = header[0].removeprefix("\ufeff")  # UTF-8 BOM
    cols = {c.strip(): i for i, c in enumerate(header)}
    missing = [f"{k}={v!r}" for k, v in _mapping(cfg).items() if v not in cols]
    if missing:
        return "bad_header", (
            f"column(s) {', '.join(missing)} mapped by ingest.csv not in the header "
            f"({len(cols)} columns); fix ingest.csv.<field> (set optional ones to null)"
        )
    return cols


@safe_units(NAME)
def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    """Ranges of cfg.csv_rows_per_unit rows; Unit.extra = the byte offset (in the decompressed
    stream) of the range's first row, where read() starts splitting."""
    path = Path(path).resolve()
    size, step, starts, n = path.stat().st_size, cfg.csv_rows_per_unit, [], 0
    with open_bytes(path) as f:
        recs = records(f, cfg.max_member_bytes)
        cols = _header(next(recs, None), cfg)
        for n, rec in enumerate(() if isinstance(cols, tuple) else recs, 1):
            if n % step == 1 or step == 1:
                starts.append(rec[3])
    if isinstance(cols, tuple):
        log.warning("%s: quarantined whole (%s): %s", path, *cols)
        yield fault(NAME, str(path), None, *cols, size=size)
        return
    for k, a in enumerate(range(0, n, step)):
        b = min(a + step, n)
        yield Unit(NAME, str(path), None, a, b, row_share(size, b - a, n), extra=str(starts[k]))


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


@reads_faults
def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    stop = unit.stop if unit.stop >= 0 else sys.maxsize
    try:
        f = open_bytes(unit.uri)
    except OSError as e:
        yield Bad(None, "unreadable", f"{type(e).__name__}: {e}"[:300])
        return
    with f:
        recs = records(f, cfg.max_member_bytes)
        cols = _header(next(recs, None), cfg)
        if isinstance(cols, tuple):  # the file changed since the driver read its header
            yield Bad(None, *cols)
            return
        first = 0
        if unit.extra is not None:  # start at the range's first row (units() found it)
            recs, first = seek_records(f, int(unit.extra), cfg.max_member_bytes), unit.start
        for i, (raw, size, problem, _) in enumerate(recs, first):
            if i >= stop:
                break
            if i >= unit.start:
                yield _row(str(i), raw, size, problem, cols, cfg)


def seek_records(f: BinaryIO, offset: int, cap: int) -> Iterator[Record]:
    try:
        f.seek(offset)
    except STREAM_ERRORS as e:  # the file changed since units() read it
        yield None, 0, stream_error(e), offset
        return
    yield from records(f, cap, start=offset)


def _row(member: str, raw: bytes | None, size: int, problem, cols, cfg: IngestCfg) -> Raw | Bad:
    if problem:
        return Bad(member, *problem, sha256_bytes(raw) if raw else None, size)
    if raw is None:
        return Bad(member, "too_large", f"{size} bytes > {cfg.max_member_bytes}", size=size)
    try:
        fields = _fields(raw)
    except csv.Error as e:
        return Bad(member, "bad_csv", f"Error: {e}"[:300], sha256_bytes(raw), len(raw))
    return guarded(member, raw, "bad_csv", lambda: row_to_raw(int(member), fields, raw, cols, cfg))
