"""Ingest memory under hostile inputs: peak RSS of the whole process tree stays bounded (issue #14).

    .venv/bin/python bench/ingest_memory.py                      # 10 MB gzip bomb + 2 GB sparse file
    .venv/bin/python bench/ingest_memory.py --bomb-mb 2 --sparse-gb 0.5     # a quicker look

Two `radgpt ingest` runs (child processes, local[2]) over the same synthetic sample:
- baseline: the sample alone;
- hostile: the sample plus a gzip bomb (an .ndjson.gz of --bomb-mb MB that inflates ~1000x into
  one line without a newline) and a sparse file (a .csv of --sparse-gb GB of zero bytes).
The process tree of each run (the CLI's Python driver, the Spark JVM, the Python workers) is
sampled every 0.1 s; the peak of the summed RSS is reported with the ratio hostile / baseline, the
2 GB budget, and the quarantine reasons the hostile inputs got (the run must succeed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from proctree import run_sampled  # noqa: E402  (bench/, beside this script)

BUDGET_MB = 2048


def run(root: Path, inputs: list[Path], sets: tuple[str, ...] = ()) -> dict:
    """One `radgpt ingest` (local[2], `--set`s added) in a child process: its exit code, seconds,
    the peak RSS of its tree (`peak_mb`) and of its Python driver, JVM and Python workers."""
    cmd = [sys.executable, "-m", "radgpt", "ingest", "--config", str(REPO / "conf/local.yaml"),
           "--set", f"paths.root={root}", "--set", "spark.master=local[2]",
           *(x for kv in sets for x in ("--set", kv)), *map(str, inputs)]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    root.mkdir(parents=True, exist_ok=True)
    rc, seconds, peak = run_sampled(cmd, root / "ingest.log", cwd=REPO, env=env, kinds=True)
    k = peak.kinds_mb
    return {"rc": rc, "seconds": round(seconds, 1), "peak_mb": round(peak.rss_mb),
            "driver_peak_mb": round(k.get("root", 0)), "jvm_peak_mb": round(k.get("jvm", 0)),
            "workers_peak_mb": round(k.get("other", 0))}  # fmt: skip


def hostile_inputs(d: Path, bomb_mb: float, sparse_gb: float) -> tuple[list[Path], int]:
    """The bomb and the sparse file, and how many MB the bomb inflates to."""
    d.mkdir(parents=True)
    bomb, inflated = d / "bomb.ndjson.gz", 0
    with gzip.open(bomb, "wb", compresslevel=9) as f:  # zeros compress ~1000:1
        chunk = b"\0" * (1 << 20)
        while bomb.stat().st_size < bomb_mb * 2**20:
            for _ in range(64):
                f.write(chunk)
            inflated += 64
            f.flush()
    sparse = d / "sparse.csv"
    with open(sparse, "wb") as f:
        f.truncate(int(sparse_gb * 2**30))  # holes: no disk used, reads as zero bytes
    return [bomb, sparse], inflated


def quarantine_reasons(root: Path) -> dict:
    from radgpt import table

    q = table.read(root / "quarantine", "quarantine")
    out: dict = {}
    for uri, reason in zip(q["source_uri"].to_pylist(), q["reason"].to_pylist(), strict=True):
        if Path(uri).name in ("bomb.ndjson.gz", "sparse.csv"):
            out.setdefault(Path(uri).name, []).append(reason)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--bomb-mb", type=float, default=10, help="compressed size of the gzip bomb (MB)"
    )
    ap.add_argument("--sparse-gb", type=float, default=2, help="size of the sparse file (GB)")
    ap.add_argument("--n", type=int, default=50, help="sample reports per format")
    args = ap.parse_args()
    from radgpt.sample.write import write_sample

    with tempfile.TemporaryDirectory(prefix="radgpt-mem-") as tmp:
        tmp = Path(tmp)
        write_sample(tmp / "sample", n=args.n, seed=0)
        base = run(tmp / "base", [tmp / "sample"])
        bad, inflated = hostile_inputs(tmp / "hostile-in", args.bomb_mb, args.sparse_gb)
        hostile = run(tmp / "hostile", [tmp / "sample", *bad])
        res = {
            "bomb_mb": args.bomb_mb, "bomb_inflates_to_mb": inflated,
            "sparse_gb": args.sparse_gb, "baseline": base, "hostile": hostile,
            "ratio_peak_hostile_vs_baseline": round(hostile["peak_mb"] / max(1, base["peak_mb"]), 2),
            "under_budget": hostile["peak_mb"] < BUDGET_MB and hostile["rc"] == 0,
            "quarantined_as": quarantine_reasons(tmp / "hostile") if hostile["rc"] == 0 else None,
        }  # fmt: skip
    print(json.dumps(res, indent=2))
    return 0 if res["under_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
