"""FHIR R4B NDJSON export of committed drafts: preliminary DiagnosticReport + Provenance.

    radgpt writeback --config conf/local.yaml            # FHIR NDJSON for committed runs not yet exported
    radgpt writeback --run-id draft-2024... --force      # re-export one run

FHIR: <fhir>/<run_id>/DiagnosticReport.ndjson + Provenance.ndjson, staged then renamed as one dir.
The drafts come from the drafts table (radgpt.writeback.drafts); config section `fhir` (FhirCfg).
Per draft a preliminary DiagnosticReport (US Core DiagnosticReport Note where the data allows):
AIAST security label, narrative for the reviewer, review flags as FLAG_EXT extensions, the
patient and the order by identifier (logical references: a Bulk $import never dangles), what the
source lacks stated with data-absent-reason. docs/writeback.md shows and explains one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from html import escape
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from radgpt.config import FhirCfg
from radgpt.runtime import utcnow
from radgpt.schema import split_token
from radgpt.writeback.drafts import manifests, read_drafts
from radgpt.writeback.provenance import (
    AI_LABEL,
    BASE,
    DRAFT_TAG,
    SYS_DRAFT,
    XHTML,
    _instant,
    fhir_provenance,
    source_reference,
)

log = logging.getLogger("radgpt.writeback.fhir")
SOURCE_EXT = f"{BASE}/StructureDefinition/derived-from-report"
# one per review flag: code (Coding in SYS_FLAG) + detail (string, 0..*: what the flag saw)
FLAG_EXT = f"{BASE}/StructureDefinition/review-flag"
SYS_FLAG = f"{BASE}/CodeSystem/review-flag"
SYS_STUDY = "urn:radgpt:study-id"
# optional drafts column, flag -> what it saw (map<string,string> or map<string,list<string>>)
FLAG_DETAILS = "flag_details"
US_CORE_NOTE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-diagnosticreport-note"
DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
LOINC = "http://loinc.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
CATEGORY = [
    {"coding": [{"system": LOINC, "code": "LP29684-5", "display": "Radiology"}]},  # US Core
    {"coding": [{"system": V2 + "0074", "code": "RAD", "display": "Radiology"}]},  # HL7 v2
]
IMAGING = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
ACSN = {"coding": [{"system": V2 + "0203", "code": "ACSN", "display": "Accession ID"}]}
REVIEW = "AI-generated preliminary draft, requires radiologist review"
FHIR_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")


def absent(reason: str = "unknown") -> dict:
    """An element the source does not give, stated (US Core: data-absent-reason)."""
    return {"extension": [{"url": DAR, "valueCode": reason}]}


def subject(row: dict, cfg: FhirCfg) -> tuple[dict, bool]:
    """DiagnosticReport.subject, and whether it names a patient a server can find.

    fhir-source ids are Patient ids on the source server: literal Patient/<id> there (same_server),
    else stated unknown; other sources' ids (MRN, dataset id): a logical reference by identifier
    in fhir.patient_id_system; no id: stated unknown. Never a literal reference that may dangle."""
    pid = row.get("patient_id")
    if pid and row["source"] == "fhir":
        if cfg.same_server and FHIR_ID.fullmatch(pid):
            return {"reference": f"Patient/{pid}"}, True
        return absent(), False
    if pid:
        system = {"system": cfg.patient_id_system} if cfg.patient_id_system else {}
        return {"type": "Patient", "identifier": system | {"value": pid}}, bool(system)
    return absent(), False


def code(row: dict) -> dict:
    """The source's exam code (when it has a system) and LOINC 18748-4; the exam as text."""
    codings = []
    if row.get("exam_code"):
        system, value = split_token(row["exam_code"])
        if system and (system, value) != (LOINC, IMAGING["code"]):
            codings.append({"system": system, "code": value})
    return {"coding": [*codings, IMAGING]} | ({"text": row["exam"]} if row.get("exam") else {})


def order_and_study(row: dict, cfg: FhirCfg) -> dict:
    """basedOn: the imaging order by its accession (identifier type ACSN); imagingStudy: the
    study id when it is not that accession (literal only for a fhir source on the same server)."""
    out: dict = {}
    acc = split_token(row["accession"]) if row.get("accession") else (None, None)
    if acc[1]:
        system = acc[0] or cfg.accession_system
        ident = {"type": ACSN} | ({"system": system} if system else {}) | {"value": acc[1]}
        out["basedOn"] = [{"type": "ServiceRequest", "identifier": ident}]
    sid = row.get("study_id")
    if not sid or sid == acc[1]:
        return out
    study = sid.removeprefix("ImagingStudy/")  # a fhir source's study is a reference there
    if row["source"] != "fhir":
        out["imagingStudy"] = [
            {"type": "ImagingStudy", "identifier": {"system": SYS_STUDY, "value": sid}}
        ]
    elif cfg.same_server and study != sid and FHIR_ID.fullmatch(study):
        out["imagingStudy"] = [{"reference": sid}]
    return out


def flag_details(row: dict) -> dict[str, list[str]]:
    """flag -> its details: the observations behind it (drafts.flag_observations, entries
    '<flag>:<observation>'), then the optional FLAG_DETAILS column (a map, given as pairs)."""
    out: dict[str, list[str]] = {}
    for o in row.get("flag_observations") or []:
        flag, _, obs = o.partition(":")
        if obs.strip():
            out.setdefault(flag, []).append(obs.strip())
    v = row.get(FLAG_DETAILS) or []
    for flag, d in v.items() if isinstance(v, dict) else v:
        for x in d if isinstance(d, list | tuple) else [d]:
            if x is not None and str(x).strip():
                out.setdefault(flag, []).append(str(x).strip())
    return out


def flag_extensions(row: dict) -> list[dict]:
    """One review-flag extension per flag in the row's list, in order, with its details."""
    details = flag_details(row)
    return [
        {
            "url": FLAG_EXT,
            "extension": [{"url": "code", "valueCoding": {"system": SYS_FLAG, "code": f}}]
            + [{"url": "detail", "valueString": d} for d in details.get(f, [])],
        }
        for f in row.get("flags") or []
    ]


def narrative(row: dict, res: dict) -> dict:
    """What a reviewer reads: the AI label, the exam and its accession, the draft, the review flags
    (with what they saw), what the source did not give."""
    exam = escape(row.get("exam") or IMAGING["display"])
    when = f" ({res['effectiveDateTime']})" if "effectiveDateTime" in res else ""
    draft = escape(row["draft"].strip()).replace("\n", "<br/>") or "<i>(empty)</i>"
    details, items = flag_details(row), []
    for f in row.get("flags") or []:
        seen = f": {'; '.join(details[f])}" if f in details else ""
        items.append(f"<li>{escape(f.replace('_', ' ') + seen)}</li>")
    flags = "".join(items)
    gone = [n for n, k in (("patient", "subject"), ("exam time", "_effectiveDateTime"))
            if "extension" in res.get(k, {})]  # fmt: skip
    parts = [
        f"<p><b>{REVIEW}.</b></p>",
        f"<p>Exam: {exam}{when}</p>",
        *(f"<p>Accession: {escape(o['identifier']['value'])}</p>" for o in res.get("basedOn", [])),
        f"<p>Draft impression: {draft}</p>",
        f"<p>Review flags:</p><ul>{flags}</ul>" if flags else "<p>Review flags: none</p>",
        f"<p>Not given by the source: {', '.join(gone)}</p>" if gone else "",
    ]
    return {"status": "extensions", "div": f'<div xmlns="{XHTML}">{"".join(parts)}</div>'}


def diagnostic_report(row: dict, cfg: FhirCfg | None = None) -> dict:
    """One preliminary DiagnosticReport carrying the draft, validated with fhir.resources R4B;
    meta.profile US Core DiagnosticReport Note only when it meets the profile's must-haves."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    cfg = cfg or FhirCfg()
    subj, named = subject(row, cfg)
    when = row.get("exam_time")
    res: dict = {
        "resourceType": "DiagnosticReport",
        "id": row["draft_id"],
        "meta": {"security": [AI_LABEL], "tag": [DRAFT_TAG]},
        "extension": [{"url": SOURCE_EXT, "valueReference": source_reference(row)}],
        "identifier": [{"system": SYS_DRAFT, "value": row["draft_id"]}],
        **order_and_study(row, cfg),
        "status": "preliminary",
        "category": CATEGORY,
        "code": code(row),
        "subject": subj,
        **({"effectiveDateTime": _instant(when)} if when else {"_effectiveDateTime": absent()}),
        "issued": _instant(row["generated_at"]),
    }
    res["extension"] += flag_extensions(row)
    if row["draft"].strip():  # FHIR strings cannot be empty: an empty draft has only its flags
        res["conclusion"] = row["draft"]
    if cfg.us_core and named and when:  # us-core-10: a preliminary report has effective[x]
        res["meta"] = {"profile": [US_CORE_NOTE]} | res["meta"]
    res = {
        **{k: res[k] for k in ("resourceType", "id", "meta")},
        "text": narrative(row, res),
        **res,
    }
    DiagnosticReport.model_validate(res)  # raises pydantic.ValidationError on a bad resource
    return res


def write_fhir(
    t: pa.Table,
    fhir: str | os.PathLike,
    run_id: str,
    force: bool = False,
    cfg: FhirCfg | None = None,
) -> dict:
    """NDJSON DiagnosticReport + Provenance per draft for one run; every resource validated."""
    cfg = cfg or FhirCfg()
    out = Path(fhir) / run_id
    if out.exists() and not force:
        log.info("FHIR export for %s exists: %s", run_id, out)
        return {"run_id": run_id, "dir": str(out), "resources": 0, "skipped": True}
    stage = Path(fhir) / f".{run_id}.staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    t0, n, signed_at = time.perf_counter(), 0, utcnow()
    bare = 0  # patients named by a value without a system: no server can match them
    with (
        open(stage / "DiagnosticReport.ndjson", "w") as fd,
        open(stage / "Provenance.ndjson", "w") as fp,
    ):
        for row in t.to_pylist():
            dr = diagnostic_report(row, cfg)
            bare += "identifier" in dr["subject"] and "system" not in dr["subject"]["identifier"]
            fd.write(json.dumps(dr, separators=(",", ":")) + "\n")
            ref = f"DiagnosticReport/{row['draft_id']}"
            prov = fhir_provenance(row, ref, cfg.signer, signed_at)
            fp.write(json.dumps(prov, separators=(",", ":")) + "\n")
            n += 1
    if out.exists():
        shutil.rmtree(out)
    os.replace(stage, out)
    log.info("FHIR: %d drafts -> %s in %.1fs", n, out, time.perf_counter() - t0)
    if bare:
        log.warning(
            "%d drafts name their patient without a system: set fhir.patient_id_system", bare
        )
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
        done.append(write_fhir(t, fhir, m["run_id"], force=force, cfg=cfg.fhir))
    return done
