"""Write-back: drafts Parquet table (atomic commit + manifest) and FHIR R4B NDJSON export.

    radgpt writeback --config conf/local.yaml            # FHIR NDJSON for committed runs not yet exported
    radgpt writeback --run-id draft-2024... --force      # re-export one run

Drafts table layout (schemas/drafts.json, hive-partitioned by run_date, readable as is by
polars / pyarrow / DuckDB / Spark):
    <drafts>/run_date=YYYY-MM-DD/part-<run_id>-<n>.parquet   # one file per run and night
    <drafts>/_manifests/<run_id>.json                          # written LAST: the commit record
Commits reuse radgpt.table (the reports table's mechanism): stage under <drafts>/_staging-<run_id>
(ignored by readers), rename into the partition, then write the manifest. Rows whose draft_id is
already committed are dropped first, so a re-run of the same night writes zero new rows; files that
no manifest names (a crashed run) are removed by the next commit's recovery.

FHIR: <fhir>/<run_id>/DiagnosticReport.ndjson + Provenance.ndjson, staged then renamed as one dir.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radgpt import table
from radgpt.runtime import code_version, utcnow
from radgpt.schema import arrow_schema, check_arrow
from radgpt.writeback.provenance import AI_TAG, DRAFT_TAG, SYS_DRAFT, SYS_REPORT, fhir_provenance

log = logging.getLogger("radgpt.writeback.fhir")
SOURCE_EXT = "https://radgpt.local/fhir/StructureDefinition/derived-from-report"
# one per review flag: sub-extension "flag" (the code) and one "observation" per labeler observation
# behind it (omits_finding / adds_finding); the narrative (text) says the same for a human
REVIEW_EXT = "https://radgpt.local/fhir/StructureDefinition/review-flag"
SYS_OBSERVATION = "urn:radgpt:labeler-observation"


def to_table(rows: list[dict] | pa.Table) -> pa.Table:
    """Rows (dicts) or a table -> the drafts contract (column order, types, non-null checks)."""
    schema = arrow_schema("drafts")
    if isinstance(rows, pa.Table):
        missing = [f for f in schema if f.name not in rows.column_names]
        for f in missing:  # a column of a later schema version: its default (below)
            rows = rows.append_column(f.name, pa.nulls(len(rows), f.type))
        t = table.with_defaults(rows.select(schema.names), "drafts").cast(schema)
    else:
        t = table.with_defaults(pa.Table.from_pylist(rows, schema=schema), "drafts")
    check_arrow(t, "drafts")
    return t


def manifests(drafts: str | os.PathLike) -> list[dict]:
    return table.manifests(drafts)


def read_drafts(
    drafts: str | os.PathLike, columns: list[str] | None = None, filter=None
) -> pa.Table:
    """Committed drafts only (files named by a manifest), schema "drafts" incl. run_date."""
    return table.read(drafts, "drafts", columns, filter)


def committed_ids(drafts: str | os.PathLike) -> set[str]:
    return set(read_drafts(drafts, ["draft_id"]).column("draft_id").to_pylist())


def commit_drafts(rows: list[dict] | pa.Table, drafts: str | os.PathLike, run_id: str) -> dict:
    """Append new drafts atomically; returns the manifest (rows = newly committed rows)."""
    drafts = Path(drafts)
    drafts.mkdir(parents=True, exist_ok=True)
    table.recover(drafts)  # a crashed run's staged or unlisted files go first
    t = to_table(rows)
    n_in = len(t)
    # drop duplicates inside the batch, then against committed drafts (idempotent re-runs)
    ids = t.column("draft_id").to_pylist()
    first = [i for i, j in enumerate(_first_index(ids)) if i == j]
    t = t.take(pa.array(first, pa.int64()))
    done = committed_ids(drafts)
    if done:
        t = t.filter(pc.invert(pc.is_in(t.column("draft_id"), pa.array(sorted(done)))))
    stage = table.staging_dir(drafts, run_id)
    for run_date in sorted(set(t.column("run_date").to_pylist())):
        part = t.filter(pc.equal(t.column("run_date"), run_date)).drop_columns(["run_date"])
        tmp = stage / f"run_date={run_date}" / "part.parquet"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, tmp, compression="zstd")
    record = {
        "rows": len(t),
        "rows_in": n_in,
        "duplicates": n_in - len(t),
        "committed_at": utcnow().isoformat(),
        "code_version": code_version(),
    }
    # rename staged files into their partitions, then write the manifest: the commit, last
    manifest = table.commit(drafts, run_id, record)
    log.info(
        "committed %d new drafts (%d duplicates skipped) run %s", len(t), n_in - len(t), run_id
    )
    return manifest


def _first_index(ids: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    return [seen.setdefault(d, i) for i, d in enumerate(ids)]


def _behind(flag: str, observations: list[str]) -> list[str]:
    return [o.partition(":")[2] for o in observations if o.partition(":")[0] == flag]


def review_extensions(flags: list[str], observations: list[str]) -> list[dict]:
    """REVIEW_EXT per flag: {flag: code, observation: Coding per observation behind it}."""
    out = []
    for f in flags:
        sub = [{"url": "flag", "valueCode": f}]
        sub += [{"url": "observation", "valueCoding": {"system": SYS_OBSERVATION, "code": o}}
                for o in _behind(f, observations)]  # fmt: skip
        out.append({"url": REVIEW_EXT, "extension": sub})
    return out


def narrative(draft: str, flags: list[str], observations: list[str]) -> dict:
    """XHTML narrative: the draft and what the reviewer should check."""
    import html

    items = "".join(
        f"<li>{html.escape(f.replace('_', ' '))}"
        + (f": {html.escape(', '.join(b))}" if (b := _behind(f, observations)) else "")
        + "</li>"
        for f in flags
    )
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>AI-generated draft impression (requires '
        f"radiologist review): {html.escape(draft) or '(empty)'}</p><p>Review flags:</p>"
        f"<ul>{items}</ul></div>"
    )
    return {"status": "extensions", "div": div}


def diagnostic_report(row: dict) -> dict:
    """One preliminary DiagnosticReport carrying the draft, validated with fhir.resources R4B."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    from radgpt.writeback.provenance import _instant, source_reference

    res: dict = {
        "resourceType": "DiagnosticReport",
        "id": row["draft_id"],
        "meta": {"tag": [AI_TAG, DRAFT_TAG]},
        "extension": [{"url": SOURCE_EXT, "valueReference": source_reference(row)}],
        "identifier": [
            {"system": SYS_DRAFT, "value": row["draft_id"]},
            {
                "system": SYS_REPORT,
                "value": row["report_id"],
                "type": {"text": "source report (this draft is derived from it)"},
            },
        ],
        "status": "preliminary",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "18748-4",
                    "display": "Diagnostic imaging study",
                }
            ],
            "text": "AI-generated draft impression (requires radiologist review)",
        },
        "issued": _instant(row["generated_at"]),
    }
    if row["draft"].strip():  # FHIR strings cannot be empty: an empty draft has only its flags
        res["conclusion"] = row["draft"]
    if row.get("patient_id"):
        res["subject"] = {"reference": f"Patient/{row['patient_id']}"}
    if row.get("study_id"):
        res["identifier"].append({"system": "urn:radgpt:study-id", "value": row["study_id"]})
    if row.get("flags"):
        res["conclusionCode"] = [
            {"coding": [{"system": "urn:radgpt:review-flag", "code": f}]} for f in row["flags"]
        ]
        res["extension"] += review_extensions(row["flags"], row.get("flag_observations") or [])
        res["text"] = narrative(row["draft"], row["flags"], row.get("flag_observations") or [])
    DiagnosticReport.model_validate(res)  # raises pydantic.ValidationError on a bad resource
    return res


def write_fhir(t: pa.Table, fhir: str | os.PathLike, run_id: str, force: bool = False) -> dict:
    """NDJSON DiagnosticReport + Provenance per draft for one run; every resource validated."""
    out = Path(fhir) / run_id
    if out.exists() and not force:
        log.info("FHIR export for %s exists: %s", run_id, out)
        return {"run_id": run_id, "dir": str(out), "resources": 0, "skipped": True}
    stage = Path(fhir) / f".{run_id}.staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    t0, n = time.perf_counter(), 0
    with (
        open(stage / "DiagnosticReport.ndjson", "w") as fd,
        open(stage / "Provenance.ndjson", "w") as fp,
    ):
        for row in t.to_pylist():
            fd.write(json.dumps(diagnostic_report(row), separators=(",", ":")) + "\n")
            prov = fhir_provenance(row, f"DiagnosticReport/{row['draft_id']}")
            fp.write(json.dumps(prov, separators=(",", ":")) + "\n")
            n += 1
    if out.exists():
        shutil.rmtree(out)
    os.replace(stage, out)
    log.info("FHIR: %d drafts -> %s in %.1fs", n, out, time.perf_counter() - t0)
    return {"run_id": run_id, "dir": str(out), "resources": 2 * n, "skipped": False}


def run_writeback(
    cfg, drafts: str | None = None, run_id: str | None = None, force: bool = False
) -> list[dict]:
    """Export committed runs to FHIR: one run, or every run with rows and no export yet."""
    from tqdm import tqdm

    drafts_dir = Path(drafts) if drafts else cfg.path("drafts")
    fhir = cfg.path("fhir")
    todo = [m for m in manifests(drafts_dir) if m["rows"] and (run_id in (None, m["run_id"]))]
    if run_id and not todo:
        raise FileNotFoundError(f"no committed drafts for run {run_id} in {drafts_dir}")
    done = []
    for m in tqdm(todo, desc="fhir write-back", unit="run", disable=len(todo) < 2):
        if (fhir / m["run_id"]).exists() and not force:
            continue
        t = read_drafts(drafts_dir, filter=pc.field("run_id") == m["run_id"])
        done.append(write_fhir(t, fhir, m["run_id"], force=force))
    return done


def add_commands(sub) -> None:
    from radgpt.cli import add_config_args

    p = sub.add_parser("writeback", help="export committed drafts as FHIR R4B NDJSON")
    add_config_args(p)
    p.add_argument("--drafts", help="drafts table dir (default: paths.drafts)")
    p.add_argument("--run-id", help="one run only (default: every run not yet exported)")
    p.add_argument("--force", action="store_true", help="re-export runs already exported")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from radgpt.cli import config_from_args

    cfg = config_from_args(args)
    res = run_writeback(cfg, args.drafts, args.run_id, args.force)
    print(json.dumps({"exported": res}, indent=2))
    return 0
