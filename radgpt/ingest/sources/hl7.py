"""HL7 v2 ORU^R01 result messages (.hl7 files, or a dir of them): one or many messages a file.

    from radgpt.ingest.sources import hl7
    units = list(hl7.units(Path("results.hl7"), cfg.ingest))  # driver: one unit per file
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
MSH/OBR -> Bad("bad_hl7"); other messages in the same file still parse.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path

import hl7 as pyhl7

from radgpt.config import IngestCfg
from radgpt.ingest.sources.base import Bad, Raw, Unit
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
_SEG = re.compile(rb"[^\r\n]+")


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


def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    if path.is_file():
        yield Unit(NAME, str(path), None, size=path.stat().st_size)
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(".hl7"):
                p = Path(root) / f
                yield Unit(NAME, str(p), None, size=p.stat().st_size)


def split_messages(data: bytes) -> list[bytes]:
    """Raw bytes of each message: segments grouped from one MSH to the next, joined by \r.
    Segments before the first MSH form a message of their own (it will fail: no MSH).
    When segments are \r-separated and the file also has newlines, a newline ends a message
    (the usual one-message-per-line batch layout): a line without MSH is then its own bad
    message instead of being glued to the previous report."""
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    cr_lines = re.search(rb"\r(?!\n)", data) is not None and b"\n" in data
    chunks = re.split(rb"\r?\n", data) if cr_lines else [data]
    msgs: list[list[bytes]] = []
    for chunk in chunks:
        first = True
        for m in _SEG.finditer(chunk):
            seg = m.group().strip(b" \t")
            if not seg:
                continue
            if seg.startswith(b"MSH") or not msgs or (cr_lines and first):
                msgs.append([])
            first = False
            msgs[-1].append(seg)
    return [b"\r".join(s) for s in msgs]


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
        obr = msg.segment("OBR")
    except KeyError:
        return Bad(member, "bad_hl7", "no OBR segment", sha, size)
    except Exception as e:  # python-hl7 raises assorted errors on malformed input
        return Bad(member, "bad_hl7", f"{type(e).__name__}", sha, size)
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


def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    p = Path(unit.uri)
    try:
        size = p.stat().st_size
        if size > cfg.max_member_bytes:
            yield Bad(None, "too_large", f"{size} bytes > {cfg.max_member_bytes}", size=size)
            return
        data = p.read_bytes()
    except OSError as e:
        yield Bad(None, "unreadable", f"{type(e).__name__}: {e}")
        return
    for i, raw in enumerate(split_messages(data)):
        yield parse_message(str(i), raw)
