"""FHIR R4B NDJSON export of committed drafts: preliminary DiagnosticReport + Provenance.

    radgpt writeback --config conf/local.yaml            # FHIR NDJSON for committed runs not yet exported
    radgpt writeback --run-id draft-2024... --force      # re-export one run

FHIR: <fhir>/<run_id>/DiagnosticReport.ndjson + Provenance.ndjson, staged then renamed as one dir.
The drafts come from the drafts table (radgpt.writeback.drafts).
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

from radgpt.writeback.drafts import manifests, read_drafts
from radgpt.writeback.provenance import AI_TAG, DRAFT_TAG, SYS_DRAFT, SYS_REPORT, fhir_provenance

log = logging.getLogger("radgpt.writeback.fhir")
SOURCE_EXT = "https://radgpt.local/fhir/StructureDefinition/derived-from-report"
# one per review flag: sub-extension "flag" (the code) and one "observation" per labeler observation
# behind it (omits_finding / adds_finding); the narrative (text) says the same for a human
REVIEW_EXT = "https://radgpt.local/fhir/StructureDefinition/review-flag"
SYS_OBSERVATION = "urn:radgpt:labeler-observation"


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


def run_writeback(cfg, run_id: str | None = None, force: bool = False) -> list[dict]:
    """Export committed runs of paths.drafts to FHIR under paths.fhir: one run, or every run with
    rows and no export yet (force: exported ones again)."""
    from tqdm import tqdm

    drafts_dir = cfg.path("drafts")
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
