"""Behaviour check for refactors: the whole pipeline's outputs, canonicalized, compared across commits.

    python bench/equivalence.py snapshot --out /tmp/eq-before      # on the old commit
    python bench/equivalence.py snapshot --out /tmp/eq-after       # on the new commit
    python bench/equivalence.py compare /tmp/eq-before /tmp/eq-after

`snapshot` drives the `radgpt` command line only (module paths may change between the two commits,
the commands may not) in a fresh root: the synthetic sample (+ the IU CSV when ../shared has it) is
ingested, 30 test reports are drafted with the shipped adapter, written back as FHIR and scored by
`radgpt evaluate`. It writes, canonicalized (rows sorted, run ids, timestamps, paths, timings and
the code version masked): table.jsonl, quarantine.jsonl, drafts.jsonl, fhir.jsonl, metrics.json.
`compare` prints the first differences per file and exits 1 when any file differs.
Costs ~3-4 minutes on 2 cores (Spark, a local Ray, 30 CPU drafts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IU_CSV = REPO.parent / "shared" / "data" / "iu_xray" / "indiana_reports.csv"
FILES = ("table.jsonl", "quarantine.jsonl", "drafts.jsonl", "fhir.jsonl", "metrics.json")
# volatile values: per-run ids, wall-clock times, timings, hosts, code version
VOLATILE_KEYS = {
    "ingest_run_id", "ingested_at", "quarantined_at", "run_id", "generated_at", "latency_ms",
    "worker_host", "run_date", "code_version", "git_commit", "seconds", "total_seconds",
    "reports_per_s", "tokens_per_s", "started_at", "finished_at", "created_at", "lastUpdated",
    "recorded", "issued", "run", "runs", "config_hash", "path", "out", "report", "drafts_dir", "manifest",
}  # fmt: skip
RUN_ID = re.compile(r"\b[a-z]+-\d{8}T\d{6}Z-[0-9a-f]{6}\b")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
CODE = re.compile(r"radgpt \d+\.\d+\.\d+\+[0-9a-f]+|\b[0-9a-f]{40}\b")


def norm(obj, root: str):
    """Mask what legitimately differs between two runs of the same code."""
    if isinstance(obj, dict):
        return {
            norm(k, root): "<v>" if k in VOLATILE_KEYS else norm(v, root)
            for k, v in sorted(obj.items())
        }
    if isinstance(obj, list):
        return [norm(v, root) for v in obj]
    if isinstance(obj, str):
        s = obj.replace(root, "<ROOT>").replace(str(REPO), "<REPO>")
        return CODE.sub("<CODE>", ISO.sub("<TIME>", RUN_ID.sub("<RUN>", s)))
    return obj


def radgpt(root: Path, *args: str) -> None:
    """`radgpt ARGS --config conf/local.yaml` with paths under root (the base model shared)."""
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0"
    )
    cmd = [sys.executable, "-m", "radgpt", *args, "--config", str(REPO / "conf/local.yaml")]
    cmd += ["--set", f"paths.root={root}", "--set", f"paths.models={REPO / 'var' / 'models'}"]
    print("+ radgpt", " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def rows(path: Path, root: str) -> list[dict]:
    import pyarrow.dataset as ds

    if not path.is_dir():
        return []
    t = ds.dataset(path, format="parquet", partitioning="hive", ignore_prefixes=["_", "."])
    out = [norm(r, root) for r in t.to_table().to_pylist()]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def dump(out: Path, name: str, items) -> None:
    with open(out / name, "w") as f:
        if name.endswith(".jsonl"):
            for r in items:
                f.write(json.dumps(r, sort_keys=True, default=str) + "\n")
        else:
            json.dump(items, f, sort_keys=True, indent=1, default=str)


def snapshot(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="radgpt-eq-") as tmp:
        root = Path(tmp)
        if not (REPO / "var/models/smollm2-135m-instruct/config.json").is_file():
            radgpt(root, "models", "import-smollm2")
        radgpt(root, "sample", "--out", str(root / "sample"))
        inputs = [str(root / "sample")] + ([str(IU_CSV)] if IU_CSV.is_file() else [])
        radgpt(root, "ingest", *inputs)
        radgpt(root, "draft", "--split", "test", "--limit", "30")
        radgpt(root, "writeback")
        radgpt(root, "evaluate", "--split", "test", "--baselines", "constant,nn",
               "--out", str(root / "eval"))  # fmt: skip
        r = str(root)
        dump(out, "table.jsonl", rows(root / "table", r))
        q = root / "quarantine"  # older versions kept it inside the table
        dump(out, "quarantine.jsonl", rows(q if q.is_dir() else root / "table" / "_quarantine", r))
        dump(out, "drafts.jsonl", rows(root / "drafts", r))
        fhir = []
        for p in sorted((root / "fhir").rglob("*.ndjson")):
            fhir += [norm(json.loads(x), r) for x in p.read_text().splitlines() if x.strip()]
        dump(out, "fhir.jsonl", sorted(fhir, key=lambda x: json.dumps(x, sort_keys=True)))
        dump(out, "metrics.json", norm(json.loads((root / "eval/metrics.json").read_text()), r))
    counts = {f: sum(1 for _ in open(out / f)) for f in FILES}
    print(json.dumps({"snapshot": str(out), "lines": counts, "iu_csv": IU_CSV.is_file()}))


def compare(a: Path, b: Path) -> int:
    bad = 0
    for f in FILES:
        x, y = (a / f).read_text().splitlines(), (b / f).read_text().splitlines()
        diffs = [i for i in range(max(len(x), len(y))) if x[i : i + 1] != y[i : i + 1]]
        print(f"{f:18} {len(x):6} vs {len(y):6} lines: {'same' if not diffs else 'DIFFERENT'}")
        for i in diffs[:3]:
            print(f"  line {i + 1}:\n    - {x[i][:300] if i < len(x) else ''}\n"
                  f"    + {y[i][:300] if i < len(y) else ''}")  # fmt: skip
        bad += bool(diffs)
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot", help="run the pipeline in a temp root, write canonical outputs")
    s.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("compare", help="compare two snapshots; exit 1 on any difference")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "snapshot":
        snapshot(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
