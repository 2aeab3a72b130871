"""FHIR R4B Provenance of a draft, and the fields a draft carries about where it came from.

    from radgpt.writeback.provenance import fhir_provenance
    fhir_provenance(row, "DiagnosticReport/<draft_id>")   # a validated Provenance resource (dict)

The ids that name a draft (draft_id, generation settings, model key) live in radgpt.model.ids.
"""

from __future__ import annotations

import datetime as dt

# FHIR code systems / identifier systems used by the write-back
SYS_DRAFT = "urn:radgpt:draft-id"
SYS_REPORT = "urn:radgpt:report-id"
SYS_MODEL = "urn:radgpt:base-model-sha256"
SYS_ADAPTER = "urn:radgpt:adapter-id"
AI_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
DRAFT_TAG = {"system": "urn:radgpt:tag", "code": "ai-draft", "display": "AI-generated draft"}


def _instant(t: dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_reference(row: dict) -> dict:
    """Logical reference to the original report (its FHIR id may not exist: identifier instead)."""
    return {
        "type": "DiagnosticReport",
        "identifier": {"system": SYS_REPORT, "value": row["report_id"]},
        "display": f"source report {row['report_id']} ({row['source']})",
    }


def device(row: dict) -> dict:
    """The model as a contained FHIR Device: base weights hash + adapter id as identifiers."""
    ids = [{"system": SYS_MODEL, "value": row["base_model_sha256"]}]
    if row.get("adapter_id"):
        ids.append({"system": SYS_ADAPTER, "value": row["adapter_id"]})
    names = [{"name": str(row["base_model"]).rsplit("/", 1)[-1], "type": "model-name"}]
    return {
        "resourceType": "Device",
        "id": "model",
        "identifier": ids,
        "deviceName": names,
        "version": [
            {"value": f"{row['prompt_name']}/{row['prompt_version']}"},
            {"value": row["code_version"]},
        ],
        "note": [{"text": f"generation {row['generation']}"}],
    }


def fhir_provenance(row: dict, report_ref: str) -> dict:
    """Provenance: target = the draft DiagnosticReport, agent = model Device, entity = source."""
    from fhir.resources.R4B.provenance import Provenance

    res = {
        "resourceType": "Provenance",
        "id": f"prov-{row['draft_id']}",
        "meta": {"tag": [AI_TAG, DRAFT_TAG]},
        "contained": [device(row)],
        "target": [{"reference": report_ref}],
        "recorded": _instant(row["generated_at"]),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {"reference": "#model", "display": "radgpt drafting model"},
            }
        ],
        "entity": [{"role": "source", "what": source_reference(row)}],
    }
    Provenance.model_validate(res)  # raises pydantic.ValidationError on a bad resource
    return res


def provenance_fields(row: dict) -> dict:
    """The provenance block returned by `radgpt serve` and kept in the drafts table."""
    keys = (
        "draft_id",
        "base_model",
        "base_model_sha256",
        "adapter_id",
        "prompt_name",
        "prompt_version",
        "generation",
        "findings_sha256",
        "run_id",
        "code_version",
        "worker_host",
        "prompt_tokens",
        "output_tokens",
        "latency_ms",
    )
    out = {k: row.get(k) for k in keys}
    out["generated_at"] = _instant(row["generated_at"])
    return out
