"""Config sections of the ingest wing: the inputs, the split and the filters (ingest.*), and the
column mapping of CSV exports (ingest.csv.*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from radgpt.config.sections import _Cfg


class CsvMapCfg(_Cfg):
    """Column mapping of a CSV export onto canonical fields (defaults fit IU indiana_reports.csv)."""

    id: str = Field(
        default="uid",
        description="column of the report's id in the source (report_id = <source>:<id>); a row "
        "with it empty is quarantined (bad_csv)",
    )
    findings: str = Field(default="findings", description="column of the Findings section")
    impression: str = Field(default="impression", description="column of the Impression section")
    indication: str | None = Field(
        default="indication", description="column of the Indication section; null = none"
    )
    comparison: str | None = Field(
        default="comparison", description="column of the Comparison section; null = none"
    )
    exam: str | None = Field(
        default="image", description="column of the exam description; null = none"
    )
    patient_id: str | None = Field(
        default=None,
        description="column of the patient id (FHIR subject, see fhir.patient_id_system); "
        "null = none",
    )
    study_id: str | None = Field(default=None, description="column of the study id; null = none")
    exam_time: str | None = Field(
        default=None,
        description="column of the exam time (ISO 8601, naive = UTC; an unparsable value is "
        "dropped and flagged in the row's meta); null = none",
    )
    text: str | None = Field(
        default=None,
        description="a free-text report column to section-parse when findings is absent; "
        "null = none",
    )
    mesh: str | None = Field(
        default="MeSH", description="column of MeSH terms, kept in the row's meta; null = none"
    )


class IngestCfg(_Cfg):
    inputs: list[str] = Field(
        default_factory=lambda: ["{root}/sample"],
        description="files/dirs; `{root}` expands to paths.root (`radgpt nightly` writes the "
        "sample when missing)",
    )
    ignore: list[str] = Field(
        default_factory=lambda: [".*", "MANIFEST.json", "README*", "_*"],
        description="names skipped when a directory of mixed inputs is expanded (fnmatch patterns)",
    )
    format: Literal["auto", "mimic", "openi", "csv", "fhir", "hl7"] = Field(
        default="auto",
        description="reader of the inputs: auto = each file or folder detected "
        "(radgpt.ingest.sources); else every input is read as that format (`--format`)",
    )
    split_file: str | None = Field(
        default=None,
        description="MIMIC-CXR official split file (mimic-cxr-2.0.0-split.csv[.gz]); null = "
        "looked for beside the input (radgpt.ingest.sources.mimic)",
    )
    seed: int = Field(
        default=20230601,
        description="seed of the random split (xxhash64(seed, report_id)): a report keeps its "
        "split on every run",
    )
    split_ratio: tuple[int, int, int] = Field(
        default=(2400, 292, 576),
        description="train:validate:test proportions of the random split (the paper's OpenI "
        "proportions)",
    )
    min_findings_words: int = Field(
        default=10,
        ge=0,
        description="Findings under this many words make a report ineligible "
        "(findings_too_short; paper: 10)",
    )
    min_impression_words: int = Field(
        default=2,
        ge=0,
        description="Impression under this many words makes a report ineligible "
        "(impression_too_short; paper: 2)",
    )
    max_member_bytes: int = Field(
        default=5_000_000,
        ge=1,
        description="bytes of one record (row, line, message, file or zip member); larger ones "
        "are quarantined (too_large), never held whole",
    )
    csv_rows_per_unit: int = Field(
        default=2000,
        ge=1,
        description="CSV rows / NDJSON lines / zip, tgz members / HL7 batch messages per Spark "
        "work unit",
    )
    lock_wait_s: float = Field(
        default=0,
        ge=0,
        description="seconds to wait for another ingest that holds the table's lock "
        "(<table>/_lock) before failing with a message naming it (run id, pid, host, start); "
        "0 = fail at once",
    )
    skip_unchanged: bool = Field(
        default=True,
        description="skip inputs that a committed run read with the same content (sha256; a "
        "folder: its listing) under the same reading settings, without parsing them (the input "
        "ledger in the table's manifests, radgpt.ingest.ledger); false (`radgpt ingest --full`) "
        "reads every input again, e.g. a backfill after a reader fix",
    )
    csv: CsvMapCfg = Field(
        default_factory=CsvMapCfg, description="column mapping of CSV exports (format csv)"
    )
