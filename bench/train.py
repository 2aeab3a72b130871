"""Training throughput: length-grouped batches vs naive random padded batches, and the loss on
response logits only (radgpt.train.loop.response_loss) vs the model's full-logits loss (tokens/s
ratios, one run).

    .venv/bin/python bench/train.py                   # embedded SmolLM2-135M (imported if missing)
    .venv/bin/python bench/train.py --tiny            # tiny random Llama (seconds)
    .venv/bin/python bench/train.py --data var/table  # real train-split Findings instead of synthetic
    python bench/train.py --data var/iu/table --device cuda --retrieval-k 3 --cutoff-len 768 \
        --micro-batch 16 --grad-accum 2 --bigger 64 --autocast --steps 6   # GPU (bench/gpu.sh)

One optimizer step configuration (LoRA r=8 q/v, micro_batch x grad_accum, cutoff_len) timed in
process on the same examples with both batch orders; tokens/s counts real (non-pad) tokens only,
so padding is pure waste. Three runs on the same examples: naive and grouped with the model's own
loss (logits at every position), then grouped with response_loss; each from the same seed, so the
last two see the same batches and dropout masks and their per-step losses must agree
(`loss_max_diff`). Target: grouped >= 1.3x naive. `--bigger N` adds a fourth run: response_loss
at micro-batch N with the same examples per optimizer step (grad_accum x micro-batch / N), the
lever for a launch-bound GPU, and with --autocast the frozen weights in bf16 (train.dtype
bfloat16, radgpt.train.loop.frozen_to_bf16): everything the train loop now does. `--autocast`:
bf16 autocast around the loss, as the train loop runs on CUDA. `--retrieval-k K`: prompts with K
retrieved train examples (the shipped recipe: 3, ~450 tokens), from --data's train split. MFU
(issue #17's convention): 6 x parameters x tokens/s over --peak-tflops. `--compile`: a fifth run,
the --bigger run under torch.compile(dynamic=True): its warmup_s is the compile time, and its
losses must agree with the eager run's (compiled_loss_max_diff). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTS = [
    "The heart size is normal.",
    "The lungs are clear.",
    "No pleural effusion or pneumothorax.",
    "Mild cardiomegaly with tortuous aorta.",
    "Small left pleural effusion with adjacent atelectasis.",
    "Right lower lobe airspace consolidation concerning for pneumonia.",
    "Degenerative changes of the thoracic spine.",
    "There is a 1 cm calcified granuloma in the right upper lobe.",
    "Sternotomy wires and mediastinal clips are intact.",
    "Interval resolution of the previously seen opacity.",
]


def synthetic(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Findings of 1..24 sentences (skewed short, like IU) with short impressions."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        k = min(24, 1 + int(r.expovariate(1 / 6)))
        out.append((" ".join(r.choice(SENTS) for _ in range(k)), r.choice(SENTS)))
    return out


def from_table(root: str, n: int) -> list[tuple[str, str, str]]:
    import pyarrow.compute as pc

    from radgpt.table import read_reports

    t = read_reports(
        root,
        ["report_id", "findings", "impression"],
        filter=(pc.field("split") == "train") & pc.field("eligible"),
    )
    rows = t.slice(0, n).to_pylist()
    return [(r["findings"], r["impression"], r["report_id"]) for r in rows]


def full_loss(model, b):
    return model(**b).loss


def measure(model, ex, order, micro, accum, steps, pad_id, loss_fn=full_loss, dev="cpu",
            autocast=False) -> dict:  # fmt: skip
    import torch

    from radgpt.train import data

    def sync():  # CUDA runs asynchronously: time what it did, not what it queued
        if dev == "cuda":
            torch.cuda.synchronize()

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens, slots, t_total, losses = 0, 0, 0.0, []
    for s in range(steps + 1):  # step 0 is warm-up, not timed
        sync()
        t0 = time.perf_counter()
        n_tok = n_slot = 0
        for a in range(accum):
            b = data.collate([ex[i] for i in order[(s * accum + a) % len(order)]], pad_id)
            b = {k: v.to(dev) for k, v in b.items()}
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(model, b)
            loss.div(accum).backward()
            losses.append(loss.item())
            n_tok += int(b["attention_mask"].sum())
            n_slot += b["input_ids"].numel()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if s:
            t_total += time.perf_counter() - t0
            tokens, slots = tokens + n_tok, slots + n_slot
        else:
            warm = time.perf_counter() - t0  # includes compiling under --compile
    return {
        "tokens_per_s": tokens / t_total,
        "pad_fraction": 1 - tokens / slots,
        "s_per_step": t_total / steps,
        "warmup_s": warm,
        "_losses": losses,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random Llama instead of SmolLM2")
    ap.add_argument("--base-model", help="local HF dir (default: the embedded SmolLM2 import)")
    ap.add_argument("--data", help="reports table; default synthetic Findings")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--cutoff-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 core free)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--autocast", action="store_true", help="bf16 autocast (the CUDA train loop)")
    ap.add_argument("--retrieval-k", type=int, default=0, help="retrieved examples per prompt")
    ap.add_argument("--bigger", type=int, help="a 4th run: response_loss at this micro-batch")
    ap.add_argument("--compile", action="store_true",
                    help="a 5th run: the --bigger run under torch.compile(dynamic=True)")  # fmt: skip
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H200)")
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from radgpt.config import load_config
    from radgpt.model import prompts
    from radgpt.model.base import ensure_default_model, load_tokenizer
    from radgpt.train import data
    from radgpt.train.loop import build_model, frozen_to_bf16, response_loss

    torch.set_num_threads(a.threads)
    cfg = load_config()
    if a.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import build_tiny_model

        base = build_tiny_model(Path(tempfile.mkdtemp(prefix="radgpt-bench-")) / "tiny")
    else:
        base = Path(a.base_model) if a.base_model else ensure_default_model(cfg)
    tok = load_tokenizer(base)
    from transformers import AutoConfig

    with torch.device("meta"):  # parameters (embedding once when tied), for MFU
        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    n_params = sum(p.numel() for p in meta.parameters())
    pairs = from_table(a.data, a.examples) if a.data else synthetic(a.examples)
    recs = [
        {
            "task": "impression",
            "input": p[0],
            "output": p[1],
            "report_id": p[2] if len(p) > 2 else str(k),
        }  # the table's id: retrieval skips it
        for k, p in enumerate(pairs)
    ]
    retr = None
    if a.retrieval_k:
        from radgpt.model.retrieval import Retriever

        retr = Retriever.from_table(a.data)  # the table's train split, the report itself excluded
    ex, st = data.encode(recs, tok, prompts.get(cfg.model.template), a.cutoff_len, retr,
                         a.retrieval_k)  # fmt: skip
    lengths = [len(e["input_ids"]) for e in ex]
    res = {}
    runs = [("naive", False, full_loss, a.micro_batch), ("grouped", True, full_loss, a.micro_batch),
            ("response", True, response_loss, a.micro_batch)]  # fmt: skip
    if a.bigger:
        runs.append((f"response_mb{a.bigger}", True, response_loss, a.bigger))
        if a.compile:
            runs.append((f"compiled_mb{a.bigger}", True, response_loss, a.bigger))
    for name, grouped, loss_fn, micro in runs:
        now = name.startswith(("response_mb", "compiled_mb"))  # today's train loop (+ compile)
        accum = max(1, a.micro_batch * a.grad_accum // micro)  # same examples per step
        torch.manual_seed(0)
        m, _ = build_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), cfg)
        if a.autocast and now:  # train.dtype bfloat16
            frozen_to_bf16(m)
        m.to(a.device).train()
        if name.startswith("compiled_mb"):  # lengths vary per batch: dynamic shapes, one graph
            m = torch.compile(m, dynamic=True)
        order = data.batches(lengths, micro, seed=1, epoch=0, group_by_length=grouped)
        res[name] = measure(m, ex, order, micro, accum, a.steps, tok.pad_token_id, loss_fn,
                            a.device, a.autocast)  # fmt: skip
        if a.device == "cuda":
            res[name]["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        del m
    diff = max(abs(x - y) for x, y in zip(res["grouped"].pop("_losses"),
                                          res["response"].pop("_losses"), strict=True))  # fmt: skip
    cdiff = None
    if a.bigger and a.compile:  # same batches and dropout masks: compiled losses must agree
        c, e = (
            res[f"compiled_mb{a.bigger}"].pop("_losses"),
            res[f"response_mb{a.bigger}"]["_losses"],
        )
        cdiff = max(abs(x - y) for x, y in zip(c, e, strict=True))
    for r in res.values():
        r.pop("_losses", None)
        r["mfu"] = 6 * n_params * r["tokens_per_s"] / (a.peak_tflops * 1e12)
    out = {
        "model": "tiny" if a.tiny else str(base),
        "examples": len(ex),
        "truncated": st["truncated"],
        "mean_len": sum(lengths) / len(lengths),
        "max_len": max(lengths),
        "micro_batch": a.micro_batch,
        "grad_accum": a.grad_accum,
        "steps": a.steps,
        "threads": a.threads,
        "device": a.device,
        "autocast": a.autocast,
        "retrieval_k": a.retrieval_k,
        "params": n_params,
        **{
            f"{k}_{n}": round(v, 6 if k == "mfu" else 3)
            for n, r in res.items()
            for k, v in r.items()
        },
        "ratio": round(res["grouped"]["tokens_per_s"] / res["naive"]["tokens_per_s"], 2),
        "ratio_response_vs_grouped": round(
            res["response"]["tokens_per_s"] / res["grouped"]["tokens_per_s"], 2
        ),
        "loss_max_diff": diff,
        "compiled_loss_max_diff": cdiff,
    }
    if a.bigger:
        out[f"ratio_mb{a.bigger}_vs_grouped"] = round(
            res[f"response_mb{a.bigger}"]["tokens_per_s"] / res["grouped"]["tokens_per_s"], 2
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
