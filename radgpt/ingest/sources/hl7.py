"""HL7 v2 ORU^R01 result messages (.hl7 files, or a dir of them): one or many messages a file.

    from radgpt.ingest.sources import hl7
    units = list(hl7.units(Path("results.hl7"), cfg.ingest))  # driver: ranges of messages
    for r in hl7.read(units[0], cfg.ingest): ...             # executor

Segments may end in \\r, \\n or \\r\\n (MLLP framing bytes 0x0b/0x1c are dropped); a message starts
at each MSH segment. One Raw per message (member = 0-based message index in the file):
OBX segments of value type TX/FT/ST, in order, joined by newlines -> Raw.text (OBX-5 repetitions are
lines; FT/TX escapes unescaped: \\.br\\ -> newline, \\F\\ -> |, ...). From the first OBR: OBR-3
filler order number (else OBR-2 placer) -> native_id and study_id, OBR-3 -> accession (its universal
ID as the system when typed ISO or URI), OBR-4 text -> exam, OBR-4 code -> exam_code when its
coding system is LN, SCT or C4/CPT, OBR-7 -> exam_time (UTC; no offset = UTC), OBR-25 -> status.
PID-3 first id -> patient_id.
Text is UTF-8, or ISO-8859-1 when MSH-18 says 8859/1. A message that does not parse or lacks
MSH/OBR -> Bad("bad_hl7"); other messages in the same file still parse. Only results are reports:
a message whose MSH-9 is not ORU^R01 (an ADT^A01, an ORM) -> Bad("not_a_report").
Files are streamed (radgpt.ingest.sources.stream): the cap (cfg.max_member_bytes) applies to one
message, so a batch file of any size gives all its messages and a message over the cap is
`too_large` without being held. A file is split into ranges of cfg.csv_rows_per_unit messages
(Unit.start/stop: message indexes; Unit.extra: the byte offset of the range's first message in the
(decompressed) stream, and the file's layout), found by one streamed pass of the driver with the
same splitter the tasks use (`_split`), so a 4,000-message batch file parses on every core and the
ranges' reads together are the whole file's read (member ids, rows, sizes). A folder gives one unit
per .hl7 file, split the same way when over SPLIT_BYTES; its other files, links out of it and
special files are one quarantine row each (radgpt.ingest.sources.tree).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import hl7 as pyhl7

from radgpt.config import IngestCfg
from radgpt.ingest.sources import tree
from radgpt.ingest.sources.base import Bad, Raw, Unit, fault, guarded, reads_faults, safe_units
from radgpt.ingest.sources.stream import CHUNK, STREAM_ERRORS, open_bytes, stream_error, tokens
from radgpt.runtime import sha256_bytes
from radgpt.schema import token

NAME = "hl7"
TEXT_TYPES = {"TX", "FT", "ST"}
# HL7 table 0396 coding systems of OBR-4 -> FHIR code system URIs (others are not carried)
CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
}
RESULT = ("ORU", "R01")  # MSH-9: message code, trigger event
MLLP = b"\x0b\x1c"  # framing bytes, dropped
_BARE_CR = re.compile(rb"\r[^\n]")
# a file in a folder is split into message ranges only above this size: smaller ones are one unit
# each (not opened by the driver; a folder of one-message files would cost an open per file)
SPLIT_BYTES = 1 << 20


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8).lstrip(b"\x0b\r\n \t")


def detect(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".hl7" or _head(path).startswith(b"MSH|")
    if path.is_dir():
        return next(path.rglob("*.hl7"), None) is not None
    return False


@safe_units(NAME)
def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    if path.is_file():
        yield from _file_units(str(path), path.stat().st_size, cfg, split=True)
        return
    for rel, e in tree.files(str(path)):
        if e.kind == tree.FILE and e.name.lower().endswith(".hl7"):
            yield from _file_units(e.path, e.size, cfg, split=e.size > SPLIT_BYTES)
        elif e.kind == tree.FILE:
            yield fault(NAME, e.path, rel, "not_a_report", "not a .hl7 file", size=e.size)
        else:
            yield fault(NAME, e.path, rel, e.kind, e.detail)


def _file_units(path: str, size: int, cfg: IngestCfg, split: bool) -> Iterator[Unit]:
    """A file's units: ranges of cfg.csv_rows_per_unit messages found by one streamed pass (split),
    else the whole file. Unit.extra = "<offset>,<cr_lines 0|1>": the byte offset (in the
    decompressed stream) of the range's first message, where read() starts splitting, and the
    file's layout (_cr_lines), which read() cannot learn from the middle of the file."""
    if size == 0:
        yield fault(NAME, path, None, "empty_file", "no messages (empty file)")
        return
    if not split:
        yield Unit(NAME, path, None, size=size)
        return
    step, starts, n = cfg.csv_rows_per_unit, [], 0
    with open_bytes(path) as f:
        cr_lines = _cr_lines(f)
    with open_bytes(path) as f:
        msgs = _split(f, cfg.max_member_bytes, cr_lines, keep=False)
        for n, (*_, at) in enumerate(msgs, 1):
            if n % step == 1 or step == 1:
                starts.append(at)
        try:
            end = f.tell()  # the (decompressed) stream's length: the last range's end
        except (*STREAM_ERRORS, ValueError):
            end = size
    if n == 0:  # only blank lines and framing bytes
        yield Unit(NAME, path, None, size=size)  # read() gives nothing, as before
        return
    bounds = [*starts[1:], max(end, starts[-1])]
    for k, a in enumerate(range(0, n, step)):
        extra = f"{starts[k]},{int(cr_lines)}"
        yield Unit(
            NAME, path, None, a, min(a + step, n), max(bounds[k] - starts[k], 1), extra=extra
        )


def _cr_lines(f) -> bool:
    """Whether segments end in a bare \r while the file also has newlines (then a newline ends a
    message too: the usual one-message-per-line batch layout). Streamed, stops when known."""
    bare = newline = prev_cr = False
    try:
        while not (bare and newline) and (block := f.read(CHUNK)):
            block = block.translate(None, MLLP)
            if not block:
                continue
            bare = bare or (prev_cr and block[:1] != b"\n") or bool(_BARE_CR.search(block))
            newline, prev_cr = newline or b"\n" in block, block.endswith(b"\r")
    except STREAM_ERRORS:
        pass  # the message pass reports it
    return newline and (bare or prev_cr)


def messages(f, cap: int, cr_lines: bool) -> Iterator[tuple[bytes | None, int, tuple | None]]:
    """(raw message bytes | None when over the cap, size, (reason, detail) of a read error | None)
    per message: segments (split at \r or \n, spaces trimmed) from one MSH to the next, joined
    by \r; segments before the first MSH form a message of their own (it will fail: no MSH).
    With cr_lines, a newline also ends a message, so a line without MSH is its own bad message
    instead of being glued to the previous report."""
    for raw, size, error, _ in _split(f, cap, cr_lines):
        yield raw, size, error


def _split(
    f, cap: int, cr_lines: bool, start: int = 0, keep: bool = True
) -> Iterator[tuple[bytes | None, int, tuple | None, int]]:
    """messages(), each with the offset of its first segment's first byte (MLLP bytes counted):
    f.seek there and _split(f, ..., start=offset) gives the same messages from that one on (a
    message's first segment always opens a message, whatever came before it). An error record's
    offset is that of the message it cuts short. keep=False: the bytes are not kept (raw None)."""
    segs: list[bytes] | None = None  # None: no message yet
    size, newline, at = 0, True, start
    for tok in tokens(f, cap, seps=b"\r\n", drop=MLLP, start=start):
        if tok.error:
            yield None, size + tok.size, tok.error, (at if segs is not None else tok.start)
            return
        seg = tok.data.strip(b" \t") if tok.data is not None else None
        if seg == b"":
            newline = newline or tok.term == b"\n"
            continue
        starts = (seg if seg is not None else tok.head.lstrip(b" \t")).startswith(b"MSH")
        if starts or segs is None or (cr_lines and newline):
            if segs is not None:
                yield (b"\r".join(segs) if keep and size <= cap else None), size, None, at
            segs, size, at = [], -1, tok.start
        size += 1 + (len(seg) if seg is not None else tok.size)
        if keep and seg is not None and size <= cap:
            segs.append(seg)
        else:
            segs.clear()  # over the cap: counted, not kept
        newline = tok.term == b"\n"
    if segs is not None:
        yield (b"\r".join(segs) if keep and size <= cap else None), size, None, at


def _field(seg, n: int) -> str:
    """Field n of a segment as a string, '' when absent."""
    return str(seg[n]) if len(seg) > n else ""


def _comp(seg, n: int, c: int = 0) -> str:
    """Component c of the first repetition of field n ('' when absent)."""
    v = _field(seg, n).split("~")[0].split("^")
    return v[c].strip() if len(v) > c else ""


def _accession(obr) -> str | None:
    """OBR-3 (EI: id^namespace^universal id^its type) as "system|value"; urn:oid: for ISO ids."""
    value, uid, kind = _comp(obr, 3), _comp(obr, 3, 2), _comp(obr, 3, 3).upper()
    if not value:
        return None
    system = f"urn:oid:{uid}" if uid and kind == "ISO" else uid if uid and kind == "URI" else None
    return token(system, value)


def _exam_code(obr) -> str | None:
    """OBR-4 (CWE: code^text^coding system) as "system|code" when the system is a known one."""
    code, system = _comp(obr, 4), CODING_SYSTEMS.get(_comp(obr, 4, 2).upper())
    return token(system, code) if code and system else None


def _time(s: str) -> dt.datetime | None:
    if not s:
        return None
    try:
        t = pyhl7.parse_datetime(s)
    except (ValueError, TypeError):
        return None
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def parse_message(member: str, raw: bytes) -> Raw | Bad:
    """One message's bytes -> Raw, or Bad (detail never quotes the message)."""
    sha, size = sha256_bytes(raw), len(raw)
    if not raw.startswith(b"MSH"):
        return Bad(member, "bad_hl7", "message does not start with MSH", sha, size)
    enc = "latin-1" if b"8859" in raw.split(b"\r", 1)[0] else "utf-8"  # MSH-18 character set
    try:
        text = raw.decode(enc)
    except UnicodeDecodeError as e:
        return Bad(member, "bad_encoding", f"not UTF-8 at byte {e.start}", sha, size)
    try:
        msg = pyhl7.parse(text)
        kind = (_comp(msg.segment("MSH"), 9), _comp(msg.segment("MSH"), 9, 1))
    except Exception as e:  # python-hl7 raises assorted errors on malformed input
        return Bad(member, "bad_hl7", f"{type(e).__name__}", sha, size)
    if kind != RESULT:
        shown = "^".join(re.sub(r"[^A-Z0-9_]", "?", k[:8]) for k in kind)  # a code, never text
        return Bad(member, "not_a_report", f"MSH-9 {shown} is not a result (ORU^R01)", sha, size)
    try:
        obr = msg.segment("OBR")
    except KeyError:
        return Bad(member, "bad_hl7", "no OBR segment", sha, size)
    lines: list[str] = []
    for seg in msg:
        if str(seg[0]) != "OBX" or _field(seg, 2).strip() not in TEXT_TYPES:
            continue
        value = _field(seg, 5).replace("~", "\n")  # repetitions = lines
        value = msg.unescape(value).replace("\r", "\n")  # \.br\ -> \r -> newline
        lines.append(value)
    report = "\n".join(lines).strip()
    native = _comp(obr, 3) or _comp(obr, 2)
    if not native:
        return Bad(member, "bad_hl7", "no OBR-3/OBR-2 order number", sha, size)
    if not report:
        return Bad(member, "no_text", "no TX/FT/ST OBX text", sha, size)
    pid = next((s for s in msg if str(s[0]) == "PID"), None)
    return Raw(
        native_id=native,
        member=member,
        sha256=sha,
        text=report,
        patient_id=(_comp(pid, 3) or None) if pid is not None else None,
        study_id=native,
        exam_time=_time(_comp(obr, 7)),
        exam=_comp(obr, 4, 1) or _comp(obr, 4) or None,
        exam_code=_exam_code(obr),
        accession=_accession(obr),
        status=_comp(obr, 25) or None,
        meta={"control_id": _comp(msg.segment("MSH"), 10)} if len(msg.segment("MSH")) > 10 else {},
    )


@reads_faults
def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    stop = unit.stop if unit.stop >= 0 else sys.maxsize
    offset, cr_lines, first = 0, None, 0
    if unit.extra is not None:  # a range of messages: units() found its offset and the layout
        at, _, cr = unit.extra.partition(",")
        offset, cr_lines, first = int(at), cr == "1", unit.start
    try:
        if cr_lines is None:
            with open_bytes(unit.uri) as f:
                cr_lines = _cr_lines(f)
        f = open_bytes(unit.uri)
    except OSError as e:
        yield Bad(None, "unreadable", f"{type(e).__name__}: {e}"[:300])
        return
    with f:
        msgs = _seek_split(f, offset, cfg.max_member_bytes, cr_lines)
        for i, (raw, size, error, _) in enumerate(msgs, first):
            if i >= stop:
                break
            if i < unit.start:
                continue
            if error:
                yield Bad(str(i), *error, size=size or None)
            elif raw is None:
                yield Bad(str(i), "too_large", f"{size} bytes > {cfg.max_member_bytes}", size=size)
            else:
                yield guarded(str(i), raw, "bad_hl7", functools.partial(parse_message, str(i), raw))


def _seek_split(f, offset: int, cap: int, cr_lines: bool) -> Iterator[tuple]:
    if offset:
        try:
            f.seek(offset)
        except STREAM_ERRORS as e:  # the file changed since units() read it
            yield None, 0, stream_error(e), offset
            return
    yield from _split(f, cap, cr_lines, start=offset)
