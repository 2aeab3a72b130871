"""What every source reader provides.

A reader module (mimic, openi, csv, fhir, hl7) exposes:
    NAME: str
    detect(path: Path) -> bool                      # cheap: names/magic bytes only
    units(path: Path, cfg: IngestCfg) -> Iterator[Unit]   # DRIVER side: lists work units, never report text
    read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]  # EXECUTOR side: parses one unit
    UNIT_RECORDS: bool = False  # True: units() counts records, a unit with stop >= 0 holds
                                # exactly stop - start of them and read() yields one item each

Units are small, picklable metadata; Spark distributes them and calls `read` inside tasks.
`read` never raises for bad data: it yields `Bad` (quarantine) with a short reason code and a
detail that names the problem but never quotes report text. `units` never raises for a bad file
either (`safe_units`): a problem it finds (an empty file, a CSV header that does not match, a
link out of the input root) becomes a *fault unit* (`fault`) whose `read` yields that one `Bad`
without opening anything (`reads_faults`), so the quarantine row is made on the executor like
every other. A record (line, row, message, entry, member) that makes a parser raise is that
record's `Bad` (`guarded`), never its whole unit's.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from radgpt.ingest.sources import tree
from radgpt.runtime import sha256_bytes


@dataclass(frozen=True)
class Unit:
    format: str
    uri: str  # file or archive path, absolute
    member: str | None = None  # member inside an archive (zip/tgz), or None for the file itself
    start: int = 0  # first row/line/message of this unit (CSV, NDJSON), inclusive
    stop: int = -1  # exclusive; -1 = to the end (with UNIT_RECORDS: stop - start records)
    size: int = 0  # bytes, when known
    extra: str | None = None  # reader-specific (e.g. split-file path for MIMIC)
    fault: str | None = None  # "reason\tdetail": read() yields this one Bad and opens nothing


@dataclass
class Raw:
    """One parsed source report, before normalization and cohort rules (radgpt.ingest.rows)."""

    native_id: str  # id in the source system; report_id = f"{source}:{native_id}"
    member: str  # source_member: member path, row number, line number or message index
    sha256: str  # of the raw bytes of this report (member, row, resource or message)
    text: str | None = None  # full free-text report, section-parsed later by radgpt.ingest.sections
    sections: dict[str, str] | None = None  # already-sectioned sources (OpenI XML, CSV, FHIR)
    conclusion: str | None = None  # FHIR DiagnosticReport.conclusion: impression fallback
    patient_id: str | None = None
    study_id: str | None = None
    exam_time: dt.datetime | None = None  # timezone-aware UTC when known
    exam: str | None = None
    exam_code: str | None = None  # "system|code" (radgpt.schema.token), when the source codes it
    accession: str | None = None  # "system|value" or "value" (radgpt.schema.token)
    status: str | None = None
    split: str | None = None  # official split when the source carries one
    meta: dict[str, str] = field(default_factory=dict)  # e.g. MeSH terms
    uri: str | None = None  # source_uri when not the unit's (a file inside a unit's folder)


@dataclass
class Bad:
    """An input that could not be parsed: becomes a quarantine row."""

    member: str | None
    reason: str  # one of REASONS
    detail: str  # parser message; never report text
    sha256: str | None = None
    size: int | None = None
    uri: str | None = None  # source_uri when not the unit's (a file inside a unit's folder)


# quarantine reason codes a reader yields (schemas/quarantine.json and docs/ingest.md list them all)
REASONS = {
    "bad_xml": "an OpenI XML document that does not parse (or declares a DTD/entities)",
    "bad_json": "a JSON line/document/entry that does not parse, or is not a FHIR resource object",
    "invalid_fhir": "a DiagnosticReport that fails the FHIR R4B model",
    "skipped_resource": "a FHIR resource that is not a DiagnosticReport",
    "bad_hl7": "an HL7 v2 message that does not parse, or lacks MSH/OBR/an order number",
    "bad_encoding": "text that is not UTF-8 (or not in its declared charset)",
    "bad_csv": "a CSV row with the wrong field count, an empty id, or a broken quote",
    "too_large": "a record (line, row, message, entry, member) over ingest.max_member_bytes",
    "no_text": "a record without report text",
    "unreadable": "an I/O error, a corrupt archive/compressed stream, or a reader failure",
    "truncated": "a compressed stream or archive that ends early (the rest of the file is lost)",
    "empty_file": "a file without records (an empty CSV, NDJSON, HL7 file)",
    "bad_header": "a CSV whose header lacks the columns mapped by ingest.csv",
    "not_a_report": "a file/member that is not a report (README.txt, an HL7 ADT message)",
    "unsafe_path": "an archive member with an absolute or '..' path",
    "symlink_outside_root": "a link that resolves outside the input root (never opened)",
    "symlink_loop": "a link loop, or a link to a folder already walked",
    "dangling_symlink": "a link whose target does not exist",
    "special_file": "a named pipe, socket, device, or an archive link member",
}


def row_share(size: int, rows: int, n: int) -> int:
    """Unit.size of a range of `rows` of a file's `n` records: its share of the file's `size`
    bytes (planning only: radgpt.ingest.plan counts the parse tasks and balances them by these
    bytes; each range given the whole file's size made a 1M-row CSV 500 tasks of 2,000 rows)."""
    return max(1, -(-size * rows // max(1, n)))


def fault(fmt: str, uri: str, member: str | None, reason: str, detail: str, size: int = 0) -> Unit:
    """A unit that stands for one problem found on the driver (see the module docstring)."""
    return Unit(fmt, str(uri), member, size=size, fault=f"{reason}\t{detail}")


def reads_faults(read: Callable[[Unit, object], Iterator]) -> Callable[[Unit, object], Iterator]:
    """Decorates a reader's read(): a fault unit yields its Bad and nothing is opened."""

    @functools.wraps(read)
    def wrapped(unit: Unit, cfg) -> Iterator:
        if unit.fault is None:
            yield from read(unit, cfg)
            return
        reason, _, detail = unit.fault.partition("\t")
        yield Bad(unit.member, reason, detail, size=unit.size or None)

    return wrapped


def error_detail(e: BaseException) -> str:
    """Exception type, plus the message for I/O errors (paths, zlib/gzip/zip texts); other
    messages may echo the data, so they are left out."""
    import tarfile
    import zipfile
    import zlib

    io_errors = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile)
    return f"{type(e).__name__}: {e}"[:300] if isinstance(e, io_errors) else type(e).__name__


def safe_units(fmt: str):
    """Decorates a reader's units(): a named pipe/device is a `special_file` fault unit (never
    opened); an exception ends the listing with a fault unit `unreadable` (the units listed
    before it stand), so one odd file never fails the night."""

    def deco(units: Callable[..., Iterator[Unit]]) -> Callable[..., Iterator[Unit]]:
        @functools.wraps(units)
        def wrapped(path, cfg) -> Iterator[Unit]:
            try:
                what = tree.special(os.stat(path).st_mode)
                if what:  # a named pipe would block the open
                    yield fault(fmt, str(path), None, "special_file", f"{what}; not opened")
                    return
                yield from units(path, cfg)
            except Exception as e:  # noqa: BLE001 - a quarantine row, never a failed night
                yield fault(fmt, str(path), None, "unreadable", error_detail(e))

        return wrapped

    return deco


def guarded(member: str, raw: bytes, reason: str, parse: Callable[[], Raw | Bad]) -> Raw | Bad:
    """parse() for one record; an exception it raises (RecursionError on deep nesting, a parser
    bug) quarantines this record alone with `reason` and the exception type (never its text)."""
    try:
        return parse()
    except Exception as e:  # noqa: BLE001 - this record, not its unit
        return Bad(member, reason, f"{type(e).__name__} while parsing", sha256_bytes(raw), len(raw))
