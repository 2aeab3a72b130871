"""What every source reader provides.

A reader module (mimic, openi, csv, fhir, hl7) exposes:
    NAME: str
    detect(path: Path) -> bool                      # cheap: names/magic bytes only
    units(path: Path, cfg: IngestCfg) -> Iterator[Unit]   # DRIVER side: lists work units, never report text
    read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]  # EXECUTOR side: parses one unit

Units are small, picklable metadata; Spark distributes them and calls `read` inside tasks.
`read` never raises for bad data: it yields `Bad` (quarantine) with a short reason code and a
detail that names the problem but never quotes report text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Unit:
    format: str
    uri: str  # file or archive path, absolute
    member: str | None = None  # member inside an archive (zip/tgz), or None for the file itself
    start: int = 0  # first row/line/message of this unit (CSV, NDJSON), inclusive
    stop: int = -1  # exclusive; -1 = to the end
    size: int = 0  # bytes, when known
    extra: str | None = None  # reader-specific (e.g. split-file path for MIMIC)


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
    reason: str  # bad_xml | bad_json | invalid_fhir | bad_hl7 | bad_encoding | too_large | bad_csv | unreadable | no_text | skipped_resource
    detail: str  # parser message; never report text
    sha256: str | None = None
    size: int | None = None
    uri: str | None = None  # source_uri when not the unit's (a file inside a unit's folder)
