"""Report versions: the reports table holds each report's first version, paths.revisions the later ones.

    from radgpt.ingest.versions import read_versions, latest, superseded, is_final
    t = read_versions(cfg, ["report_id", "status", "impression", "ingested_at"])  # every version
    latest(t)                      # one row per report_id: its newest version
    superseded(cfg)                # {"<report_id>\\x1f<ingest_run_id>"} of versions a newer one replaced
    is_final("F", cfg.outcomes)    # a signed report? (FHIR final/amended/corrected/appended, HL7 F/C)

The ingest writes a report it has already seen again only when its bytes changed (a preliminary
report signed as final, an amendment): that row goes to the revisions table (same contract,
schemas/reports.json; same split as the report's first version), never to the reports table,
whose readers keep seeing one row per report_id (radgpt.ingest.cohort, state `revised`).
Training and the promotion gate read the newest version of each report; outcome linking reads
them all (radgpt.loop.outcomes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from radgpt import table

if TYPE_CHECKING:
    from radgpt.config import Config, OutcomesCfg

SEP = "\x1f"


def read_versions(cfg: Config, columns: list[str] | None = None, filter=None) -> pa.Table:
    """Every committed version: the reports table's rows, then the revisions table's."""
    cols = None if columns is None else list(dict.fromkeys([*columns]))
    parts = [
        table.read(cfg.path(name), "reports", cols, filter)
        for name in ("table", "revisions")
        if name == "table" or cfg.path(name).is_dir()
    ]
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _order(t: pa.Table) -> pa.Table:
    """Sorted by report_id, then newest version first (ingested_at, then ingest_run_id)."""
    return t.sort_by(
        [("report_id", "ascending"), ("ingested_at", "descending"),
         ("ingest_run_id", "descending")]
    )  # fmt: skip


def latest(t: pa.Table) -> pa.Table:
    """One row per report_id: its newest version (t needs report_id, ingested_at, ingest_run_id)."""
    if not len(t):
        return t
    t = _order(t)
    ids = t.column("report_id")
    first = pc.not_equal(ids.slice(1), ids.slice(0, len(t) - 1))  # row i+1 starts a new id
    keep = pa.concat_arrays([pa.array([True]), first.combine_chunks()])
    return t.filter(keep)


def key(report_id: str, ingest_run_id: str) -> str:
    return f"{report_id}{SEP}{ingest_run_id}"


def superseded(cfg: Config) -> set[str]:
    """Keys (report_id, ingest_run_id) of versions that a newer version of the same report
    replaced; empty when there are no revisions."""
    if not cfg.path("revisions").is_dir():
        return set()
    t = read_versions(cfg, ["report_id", "ingested_at", "ingest_run_id"])
    newest = {
        key(r, i)
        for r, i in zip(
            *(latest(t).column(c).to_pylist() for c in ("report_id", "ingest_run_id")),
            strict=True,
        )
    }
    every = {
        key(r, i)
        for r, i in zip(
            *(t.column(c).to_pylist() for c in ("report_id", "ingest_run_id")), strict=True
        )
    }
    return every - newest


def is_final(status: str | None, cfg: OutcomesCfg) -> bool:
    """A signed report: its status is one of outcomes.final_statuses (FHIR final, amended,
    corrected, appended; HL7 OBR-25 F, C), or it has none and outcomes.no_status_is_final (the
    MIMIC-CXR, OpenI and CSV exports hold signed reports only)."""
    if status is None or not status.strip():
        return cfg.no_status_is_final
    return status.strip() in set(cfg.final_statuses)
