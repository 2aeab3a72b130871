"""What names a draft: the generation settings, the model key and the deterministic draft id.

    from radgpt.model.ids import draft_id, generation_json
    g = generation_json(cfg)                               # canonical JSON of the generation settings
    draft_id("openi:1", "lora-abc", "chat-v1", "1", g)     # 32 hex, same inputs -> same id

A draft_id names (report, model, prompt, generation settings; the Findings of a corrected report's
later version): re-running the same night with the
same inputs yields the same ids, which is how the drafts table stays free of duplicates. Used by
the model spec (radgpt.model.spec), the drafting stages and the write-back.
"""

from __future__ import annotations

import json
from typing import Any

from radgpt.runtime import sha256_bytes


def generation_settings(cfg) -> dict[str, Any]:
    """The settings that change what a draft row holds: generate()'s (sampling knobs only when
    sampling), n-best decoding when on, the postprocess cleaning and the review flags' threshold
    (radgpt.model.spec adds the retrieval corpus and the carry rates' digests)."""
    d = cfg.draft
    g: dict[str, Any] = {
        "engine": d.engine,
        "max_new_tokens": d.max_new_tokens,
        "do_sample": d.do_sample,
        "postprocess": d.clean,
        "review": {
            "carry_threshold": d.carry_threshold,
            "abnormal_threshold": d.abnormal_threshold,
        },
    }
    if d.do_sample:
        g |= {"temperature": d.temperature, "top_p": d.top_p}
    if d.n_best > 1:
        g["n_best"] = {"n": d.n_best, "rerank_weight": d.rerank_weight}
        if d.rerank_neighbours > 0 and d.rerank_neighbour_weight > 0:
            g["n_best"]["neighbours"] = {
                "k": d.rerank_neighbours,
                "weight": d.rerank_neighbour_weight,
            }
    return g


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def generation_json(cfg) -> str:
    return canonical(generation_settings(cfg))


def model_key(adapter_id: str | None, base_sha256: str) -> str:
    """adapter_id, or the base weights' hash when drafting with the base model alone."""
    return adapter_id or f"base:{base_sha256}"


def draft_id(
    report_id: str,
    model: str,
    prompt_name: str,
    prompt_version: str,
    gen: str,
    findings_sha256: str | None = None,
) -> str:
    """sha256 over (report_id, model key, prompt name/version, generation JSON), 32 hex chars.

    findings_sha256 (text_sha256 of the Findings) is given for a report's later versions only
    (schemas/reports.json version > 1: a corrected report), so a corrected report gets a new draft
    while the draft ids of reports never corrected stay what they were."""
    parts = [report_id, model, prompt_name, str(prompt_version), gen]
    if findings_sha256 is not None:
        parts.append(findings_sha256)
    return sha256_bytes("\x1f".join(parts).encode())[:32]


def text_sha256(text: str | None) -> str:
    return sha256_bytes((text or "").encode())
