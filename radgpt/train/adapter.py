"""Adapter provenance: adapter_id (content hash) and adapter_record.json (model.spec.AdapterRecord)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from radgpt.runtime import code_version, git_commit, sha256_file

WEIGHTS = ("adapter_model.safetensors", "model.safetensors")


def adapter_id(d: str | Path) -> str:
    """<method>-<16 hex of sha256 over the weight files>: same weights, same id."""
    d = Path(d)
    files = sorted(p for p in d.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {d}")
    import hashlib

    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    kind = "lora" if (d / "adapter_config.json").is_file() else "full"
    return f"{kind}-{h.hexdigest()[:16]}"


def hardware(cfg) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "num_workers": cfg.train.num_workers,
        "use_gpu": cfg.train.use_gpu,
        "cpus_per_worker": cfg.train.cpus_per_worker,
    }


def summarize(metrics_path: Path) -> dict:
    """First/last loss, validation losses, mean throughput over the JSON-lines step log."""
    rows = (
        [json.loads(x) for x in metrics_path.read_text().splitlines()]
        if metrics_path.exists()
        else []
    )
    if not rows:
        return {"steps": 0}
    tps = [r["tokens_per_s"] for r in rows]
    return {
        "steps": rows[-1]["step"],
        "first_loss": rows[0]["loss"],
        "final_loss": rows[-1]["loss"],
        "val_loss": [
            {"step": r["step"], "epoch": r["epoch"], "val_loss": r["val_loss"]}
            for r in rows
            if r.get("val_loss") is not None
        ],
        "mean_tokens_per_s": sum(tps) / len(tps),
        "peak_rss_mb": max(r["rss_mb"] for r in rows),
        "metrics_file": str(metrics_path),
    }


def build(
    cfg, out: Path, base: Path, base_sha: str, dataset: dict, run: dict, train_state: dict
) -> dict:
    """adapter_record.json's content (radgpt.model.spec.AdapterRecord, as a JSON dict)."""
    from radgpt.model import prompts
    from radgpt.model.base import load_tokenizer, tokenizer_sha256
    from radgpt.model.spec import AdapterRecord

    tpl = prompts.get(cfg.model.template)
    tok = load_tokenizer(base)  # the token each training response ended with: drafting stops on it
    return AdapterRecord(
        adapter_id=adapter_id(out),
        method=cfg.train.method,
        base_model=str(base.resolve()),
        base_sha256=base_sha,
        base_tokenizer_sha256=tokenizer_sha256(base),
        dataset=dataset,
        task=cfg.train.task,
        instruction=prompts.instruction(cfg.train.task),
        template=tpl.name,  # prompts.get(record.template) at drafting time
        template_version=tpl.version,
        retrieval_k=cfg.train.retrieval_k,
        retrieval="retrieval" if cfg.train.retrieval_k > 0 else None,
        cutoff_len=cfg.train.cutoff_len,
        eos_token=tok.eos_token,
        eos_token_id=tok.eos_token_id,
        config=json.loads(cfg.to_json()),
        config_hash=cfg.hash(),
        code_version=code_version(),
        git_commit=git_commit(),
        run=run,
        train_state=train_state,
        metrics=summarize(Path(run["metrics"])),
        hardware=hardware(cfg),
    ).to_dict()
