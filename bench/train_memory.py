"""Training memory: activation checkpointing (train.activation_checkpointing) vs the plain train
step, each in a fresh process so that its peak RSS is its own (tokens/s and peak-memory ratios).

    .venv/bin/python bench/train_memory.py --data var/iu/table       # the shipped recipe's prompts
    .venv/bin/python bench/train_memory.py --micro-batch 16 --steps 1

The shipped adapter's LoRA (models/iu-default: r 16 on every projection), its prompts (chat-v1,
3 retrieved train examples, cutoff 768) from --data's train split, length-grouped micro-batches,
response loss, the compute dtype train.dtype auto resolves to here. Both runs see the same batches
and dropout masks: their losses must agree (loss_max_diff). Peak RSS: the child's ru_maxrss
(the model, the optimizer, the activations of the step); saved_mb: what autograd kept for backward
in the first micro-step (exact, from saved_tensors_hooks). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def child(a) -> dict:
    import torch
    from train import from_table, measure  # bench/train.py
    from transformers import AutoModelForCausalLM

    from radgpt.config import load_config
    from radgpt.model import prompts
    from radgpt.model.base import ensure_default_model, load_tokenizer, resolve_dtype
    from radgpt.model.retrieval import Retriever
    from radgpt.model.spec import AdapterRecord
    from radgpt.train import data
    from radgpt.train.loop import (
        build_model,
        checkpoint_activations,
        frozen_to_bf16,
        response_loss,
    )

    torch.set_num_threads(a.threads)
    lora = AdapterRecord.load(REPO / "models" / "iu-default").config["lora"]
    cfg = load_config(None, {"lora": lora, "train.micro_batch": a.micro_batch}, env={})
    base = ensure_default_model(cfg)
    tok = load_tokenizer(base)
    recs = [{"task": "impression", "input": f, "output": i, "report_id": r}
            for f, i, r in from_table(a.data, a.examples)]  # fmt: skip
    retr = Retriever.from_table(a.data)
    ex, _ = data.encode(recs, tok, prompts.get("chat-v1"), 768, retr, 3)
    order = data.batches([len(e["input_ids"]) for e in ex], a.micro_batch, 1, 0, True)
    amp = resolve_dtype("auto", "cpu") == "bfloat16"
    torch.manual_seed(0)
    m, _ = build_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), cfg)
    if amp:
        frozen_to_bf16(m)
    if a.child == "checkpointed":
        checkpoint_activations(m)
    m.train()
    saved = []
    b = data.collate([ex[i] for i in order[0]], tok.pad_token_id)
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            response_loss(m, b).backward()
    m.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    r = measure(m, ex, order, a.micro_batch, 1, a.steps, tok.pad_token_id, response_loss,
                "cpu", amp)  # fmt: skip
    return {
        "tokens_per_s": r["tokens_per_s"],
        "s_per_step": r["s_per_step"],
        "losses": r["_losses"],
        "saved_mb": sum(saved) / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dtype": "bfloat16" if amp else "float32",
        "batch_tokens": [len(ex[i]["input_ids"]) for i in order[0]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="var/iu/table", help="reports table (train split)")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="timed optimizer steps after a warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["plain", "checkpointed"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return 0
    res = {}
    for v in ("plain", "checkpointed"):
        argv = [sys.executable, __file__, "--child", v, "--data", a.data, "--examples",
                str(a.examples), "--micro-batch", str(a.micro_batch), "--steps", str(a.steps),
                "--threads", str(a.threads)]  # fmt: skip
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        res[v] = json.loads(out.strip().splitlines()[-1])
    p, c = res["plain"], res["checkpointed"]
    diff = max(abs(x - y) for x, y in zip(p.pop("losses"), c.pop("losses"), strict=True))
    print(json.dumps({
        "micro_batch": a.micro_batch, "steps": a.steps, "threads": a.threads,
        "dtype": p["dtype"], "first_batch_tokens": p["batch_tokens"],
        **{f"{k}_{v}": round(r[k], 2) for v, r in res.items()
           for k in ("tokens_per_s", "s_per_step", "saved_mb", "peak_rss_mb")},
        "peak_rss_ratio": round(c["peak_rss_mb"] / p["peak_rss_mb"], 3),
        "saved_ratio": round(c["saved_mb"] / p["saved_mb"], 3),
        "speed_ratio": round(c["tokens_per_s"] / p["tokens_per_s"], 3),
        "loss_max_diff": diff,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
