"""End-to-end drafting speed and memory of config variants, on the same reports, in one run.

    .venv/bin/python bench/draft_variants.py --root var/iu --split test --limit 60 --rounds 2 \
        --variant before=model.dtype=float32,draft.n_best=1,draft.carry_threshold=0.5 \
        --variant now=  --variant local=draft.executor=local

Each variant is `name=key=value,key=value` (config overrides on --config, default
conf/local.yaml; `name=` alone: its values); `name@DIR=...` runs the radgpt code of the checkout
DIR (e.g. a `git worktree` of the commit before a change) with that checkout's copy of the config
and this one's model and adapter: code before/after in the same run. Per round, every variant
runs once as a fresh `radgpt draft --split S --limit N` process into its own drafts dir (Ray's
start, model load and merge, selection and commit included, as a night pays them), in rotating
order so that machine drift falls on all of them. Prints per variant: the seconds of each round
and their sum, reports/s, the ratio to the FIRST variant (sum of its seconds / sum of this
one's), the peak summed RSS and PSS of the process tree (driver, Ray's processes and actors; PSS
counts shared pages once), the steady-state reports/s of the engine stage (round 0: reports /
the sum of their latency_ms), and how many drafts are word for word those of the first variant.
--root is a radgpt root holding an ingested table (e.g. the IU CSV: docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from proctree import run_sampled  # noqa: E402


def variant(spec: str) -> tuple[str, list[str], str | None]:
    """'name[@DIR]=k=v,k=v' -> (name, ['--set', 'k=v', ...], DIR or None)."""
    name, _, sets = spec.partition("=")
    name, _, code = name.partition("@")
    args = []
    for kv in filter(None, sets.split(",")):
        args += ["--set", kv]
    return name, args, code or None


def drafts(d: Path) -> tuple[dict[str, str], float]:
    """({report_id: draft}, seconds the engine stage generated for: each draft's latency_ms is
    its share of its batch, so steady state without start-up, model load, prompts or commit)."""
    from radgpt.writeback.drafts import read_drafts

    rows = read_drafts(d, ["report_id", "draft", "latency_ms"]).to_pylist()
    return {r["report_id"]: r["draft"] for r in rows}, sum(r["latency_ms"] for r in rows) / 1000


def conf(path: str, code: str | None) -> str:
    """The config file a variant runs with: a code variant's own copy of a config of this
    checkout (its keys are the ones that code knows), else the file itself."""
    p = Path(path).resolve()
    if code and p.is_relative_to(REPO):
        return str(Path(code).resolve() / p.relative_to(REPO))
    return str(p)


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--root", required=True, help="radgpt root with an ingested table")
    a.add_argument("--config", default=str(REPO / "conf/local.yaml"), help="the variants' base")
    a.add_argument("--split", default="test")
    a.add_argument("--limit", type=int, default=60, help="reports per run")
    a.add_argument("--rounds", type=int, default=2)
    a.add_argument("--base-model", default=str(REPO / "var/models/smollm2-135m-instruct"))
    a.add_argument("--variant", action="append", required=True, help="name=key=value,...")
    a.add_argument("--out", default=str(REPO / "var/bench-variants"))
    args = a.parse_args()
    vs = [variant(v) for v in args.variant]
    out = Path(args.out).resolve()  # a code variant runs in its own checkout
    shutil.rmtree(out, ignore_errors=True)
    res = {n: {"seconds": [], "peak_mb": [], "peak_pss_mb": []} for n, _, _ in vs}
    for r in range(args.rounds):
        for k in range(len(vs)):
            name, sets, code = vs[(k + r) % len(vs)]  # rotate the order each round
            d = out / f"{name}-{r}"
            cmd = [sys.executable, "-m", "radgpt", "--log-level", "WARNING", "draft",
                   "--config", conf(args.config, code), "--set", f"paths.root={args.root}",
                   "--set", f"model.base={args.base_model}", "--split", args.split,
                   "--limit", str(args.limit), *sets, "--out", str(d)]  # fmt: skip
            env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
            # `-m radgpt` imports from the working directory first; relative paths (models/,
            # --root) resolve against RADGPT_HOME: this checkout's, whichever code runs
            env["RADGPT_HOME"] = str(REPO)
            cwd = Path(code).resolve() if code else REPO
            rc, s, peak = run_sampled(cmd, out / f"{name}-{r}.log", cwd=cwd, env=env, pss=True)
            if rc:
                raise SystemExit(f"{name} round {r}: exit {rc} (see {out / f'{name}-{r}.log'})")
            res[name]["seconds"].append(round(s, 1))
            res[name]["peak_mb"].append(round(peak.rss_mb))
            res[name]["peak_pss_mb"].append(round(peak.pss_mb))
            print(f"round {r} {name}: {s:.1f} s, peak RSS {peak.rss_mb:.0f} MB, PSS "
                  f"{peak.pss_mb:.0f} MB", file=sys.stderr)  # fmt: skip
    first = vs[0][0]
    ref = drafts(out / f"{first}-0")[0]
    base_s = sum(res[first]["seconds"])
    for name, _, _ in vs:
        x = res[name]
        got, engine_s = drafts(out / f"{name}-0")
        x["reports"] = len(got)
        x["reports_per_s"] = round(len(got) * args.rounds / sum(x["seconds"]), 3)
        x["engine_reports_per_s"] = round(len(got) / engine_s, 3)
        x["ratio_vs_" + first] = round(base_s / sum(x["seconds"]), 2)
        x["peak_mb_max"], x["peak_pss_mb_max"] = max(x["peak_mb"]), max(x["peak_pss_mb"])
        x["same_drafts_as_" + first] = f"{sum(got.get(k) == v for k, v in ref.items())}/{len(ref)}"
    res["_run"] = {
        "variants": args.variant,
        "split": args.split,
        "limit": args.limit,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_avg_end": round(os.getloadavg()[0], 1),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
