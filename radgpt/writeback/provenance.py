"""Provenance of a draft: deterministic draft_id, run-level model spec, FHIR R4B Provenance.

    from radgpt.writeback.provenance import draft_id, generation_json, fhir_provenance
    g = generation_json(cfg)                       # canonical JSON of the generation settings
    draft_id("openi:1", "lora-abc", "chat-v1", "1", g)   # 32 hex, same inputs -> same id

A draft_id names (report, model, prompt, generation settings): re-running the same night with the
same inputs yields the same ids, which is how the drafts table stays free of duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from radgpt.runtime import sha256_bytes

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


def generation_settings(cfg) -> dict[str, Any]:
    """The settings that change what generate() returns (sampling knobs only when sampling)."""
    d = cfg.draft
    g: dict[str, Any] = {
        "engine": d.engine,
        "max_new_tokens": d.max_new_tokens,
        "do_sample": d.do_sample,
    }
    if d.do_sample:
        g |= {"temperature": d.temperature, "top_p": d.top_p}
    return g


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def generation_json(cfg) -> str:
    return canonical(generation_settings(cfg))


def model_key(adapter_id: str | None, base_sha256: str) -> str:
    """adapter_id, or the base weights' hash when drafting with the base model alone."""
    return adapter_id or f"base:{base_sha256}"


def draft_id(report_id: str, model: str, prompt_name: str, prompt_version: str, gen: str) -> str:
    """sha256 over (report_id, model key, prompt name/version, generation JSON), 32 hex chars."""
    parts = [report_id, model, prompt_name, str(prompt_version), gen]
    return sha256_bytes("\x1f".join(parts).encode())[:32]


def text_sha256(text: str | None) -> str:
    return sha256_bytes((text or "").encode())


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
