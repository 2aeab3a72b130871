"""Ingest at hospital scale (issue 18): linearity, local[1] vs local[2], a MIMIC-size run.

    .venv/bin/python bench/ingest_scale.py --linearity 100000,1000000 --repeat 2
    .venv/bin/python bench/ingest_scale.py --parallel 100000            # local[1] vs local[2]
    .venv/bin/python bench/ingest_scale.py --mimic 227835 --split-rows 377110

`--linearity N1,N2`: one synthetic CSV file (radgpt.sample.csvx) of N1 rows and one of N2, each
ingested --repeat times into fresh tables in one warm Spark session (after one unmeasured warm-up
run of N1), alternating which size goes first (pair 0: the smaller); prints the medians, the
ratio time(N2) / time(N1) (linear: N2 / N1) with the per-pair ratios, and each run's peak RSS of
the Python driver and of the JVM (sampled every 0.2 s; a run after a bigger one starts from the
RSS that one left).
`--parallel N`: N synthetic MIMIC-CXR reports; two children (bench/ingest.py --child), one with
--master local[1] and one with local[2], each with its own warm session, started one after the
other (end-to-end runs not measured), then --repeat warm runs each, alternating which goes first
(the other's session waits idle); prints the speed-up local[1] / local[2] of the medians and the
parallel efficiency (speed-up / 2) of the parse stage (the manifest's timings.parse_s) and of
the whole job, with the per-pair ratios, and the cores each median run got (its processes' CPU
seconds / its wall seconds: on a shared machine, local[2] may get fewer than 2).
`--mimic N`: a synthetic MIMIC-CXR tree of N reports (the real one: 227,835) whose split file is
cut to --split-rows rows (the real one: 377,110; every study keeps a row), ingested by one
`radgpt ingest` (local[2], a child process) with Spark's event log on; prints the time to write
the tree, the run's time, the peak RSS of its process tree and of its Python driver, JVM and
Python workers (bench/ingest_memory.py), the bytes Spark spilled (from the event log), and
whether the counts reconcile: reports seen = N, the table's rows = new, every row's split
official (or a duplicate pair's). The data goes under --where (default ./var, git-ignored) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))  # ingest_memory imports proctree from beside it

from bench.ingest import Peaks, SparkChild, child_json  # noqa: E402


def linearity_child(d: Path, master: str, repeat: int, sets: list[str]) -> dict:
    """In one warm session: each CSV under d/<n>/ ingested `repeat` times into fresh tables."""
    from radgpt.cluster import spark_session
    from radgpt.config import load_config
    from radgpt.ingest.run import run_ingest
    from radgpt.runtime import setup_logging

    setup_logging("WARNING")
    sizes = sorted(int(x.name) for x in d.iterdir() if x.name.isdigit())

    def cfg(root: Path, n: int):
        sets_ = [("paths.root", str(root)), ("spark.master", master), *sets,
                 ("ingest.inputs", [str(d / str(n) / "reports.csv")])]  # fmt: skip
        return load_config(None, sets_, env={})

    spark = spark_session(cfg(d / "warm", sizes[0]))
    run_ingest(cfg(d / "warm", sizes[0]), spark=spark)  # warm-up: session, JIT, workers
    shutil.rmtree(d / "warm")
    runs: dict[int, list[float]] = {n: [] for n in sizes}
    mem: dict[int, dict[str, list[float]]] = {n: {"py": [], "jvm": []} for n in sizes}
    seen: dict[int, int] = {}
    peaks = Peaks()
    for i in range(repeat):
        for n in sizes if i % 2 == 0 else sizes[::-1]:
            root = d / f"run-{n}-{i}"
            peaks.take()
            t = time.perf_counter()
            m = run_ingest(cfg(root, n), spark=spark)
            runs[n].append(round(time.perf_counter() - t, 2))
            got = peaks.take()  # this run's peaks
            mem[n]["py"].append(got.get("py_peak_mb", 0))
            mem[n]["jvm"].append(got.get("jvm_peak_mb", 0))
            seen[n] = m["counts"]["totals"]["seen"]
            shutil.rmtree(root)
    peaks.stop()
    lo, hi = sizes[0], sizes[-1]
    med = {n: statistics.median(v) for n, v in runs.items()}
    return {"sizes": sizes, "seen": seen, "runs_s": runs, "median_s": med,
            "ratio": round(med[hi] / med[lo], 2), "rows_ratio": hi / lo,
            "ratio_per_pair": [round(b / a, 2) for a, b in zip(runs[lo], runs[hi], strict=True)],
            "driver_python_peak_mb": {n: v["py"] for n, v in mem.items()},
            "jvm_peak_mb": {n: v["jvm"] for n, v in mem.items()}}  # fmt: skip


def run_linearity(sizes: list[int], master: str, repeat: int, sets: list[str]) -> dict:
    from radgpt.sample.csvx import write_csv

    with tempfile.TemporaryDirectory(prefix="radgpt-bench-") as tmp:
        for n in sizes:
            write_csv(Path(tmp) / str(n), n, seed=11, bad=False)
        load = os.getloadavg()
        r = child_json(__file__, "--linearity-child", tmp, master, repeat, sets)
        return r | {"load_before": load, "load_after": os.getloadavg()}


def speedup(few: list[float], many: list[float], cores: float) -> dict:
    """Runs (s) on fewer cores and on `cores` times as many: the speed-up of the medians, the
    efficiency (speed-up / cores) and the speed-up of each pair."""
    s = statistics.median(few) / statistics.median(many)
    return {"median_s": [statistics.median(few), statistics.median(many)],
            "speedup": round(s, 2), "efficiency": round(s / cores, 2),
            "per_pair": [round(a / b, 2) for a, b in zip(few, many, strict=True)]}  # fmt: skip


def cores_of(master: str) -> int:
    """local[N] -> N."""
    return int(master.removeprefix("local[").removesuffix("]"))


def run_parallel(n: int, masters: list[str], repeat: int, sets: list[str]) -> dict:
    from radgpt.sample.mimic import write_mimic

    with tempfile.TemporaryDirectory(prefix="radgpt-bench-") as tmp:
        src = Path(tmp) / "mimic"
        write_mimic(src, n, seed=11, bad=False)
        load = os.getloadavg()
        kids = {m: SparkChild(src, Path(tmp) / f"work{k}", m, repeat, sets)  # one after the other
                for k, m in enumerate(masters)}  # fmt: skip
        for i in range(repeat):
            for m in masters if i % 2 == 0 else masters[::-1]:
                kids[m].go()
        res = {m: c.result() for m, c in kids.items()}
    few, many = masters
    k = cores_of(many) / cores_of(few)
    used = {m: round(sum(r["steady_state"]["cpu_s"].values()) / r["steady_state"]["seconds"], 2)
            for m, r in res.items()}  # fmt: skip
    return {"n": n, "masters": masters, "runs": res, "load_before": load,
            "load_after": os.getloadavg(), "cores_used": used,
            "parse_stage": speedup(res[few]["warm_parse_s"], res[many]["warm_parse_s"], k),
            "whole_job": speedup(res[few]["warm_runs_s"], res[many]["warm_runs_s"], k)}  # fmt: skip


def trim_split(path: Path, rows: int) -> dict:
    """Cut a MIMIC-CXR split file (.csv.gz, header + rows of dicom_id,study_id,...) to `rows`
    rows: every study keeps its first row, the other rows go from the end of the file. Fails when
    `rows` is under the number of studies. Returns the rows and studies kept."""
    from radgpt.sample.base import gzip_bytes

    head, *body = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    seen: set[str] = set()
    first = []
    for line in body:
        study = line.split(",")[1]
        first.append(study not in seen)
        seen.add(study)
    if rows < len(seen):
        raise ValueError(f"{rows} rows cannot hold {len(seen)} studies")
    extra = max(0, len(body) - rows)  # rows to drop, the last ones that are not a study's first
    drop = set([i for i, f in enumerate(first) if not f][len(body) - len(seen) - extra :])
    kept = [line for i, line in enumerate(body) if i not in drop]
    path.write_bytes(gzip_bytes((head + "".join(kept)).encode()))
    return {"rows": len(kept), "studies": len(seen)}


def spilled(events: Path) -> dict:
    """Bytes Spark spilled (memory, disk) summed over the tasks of the event logs under
    `events` (Spark 4 writes them in folders: eventlog_v2_<app>/events_1_<app>), and the largest
    peak execution memory of a task."""
    out = {"memory_bytes_spilled": 0, "disk_bytes_spilled": 0, "task_peak_execution_mb": 0.0}
    for f in sorted(x for x in events.rglob("*") if x.is_file()):
        with open(f) as lines:
            for line in lines:
                if '"SparkListenerTaskEnd"' not in line:
                    continue
                m = json.loads(line).get("Task Metrics") or {}
                out["memory_bytes_spilled"] += m.get("Memory Bytes Spilled", 0)
                out["disk_bytes_spilled"] += m.get("Disk Bytes Spilled", 0)
                peak = m.get("Peak Execution Memory", 0) / 2**20
                out["task_peak_execution_mb"] = max(out["task_peak_execution_mb"], round(peak, 1))
    return out


def run_mimic(n: int, split_rows: int, where: Path, keep: bool) -> dict:
    import pyarrow.parquet as pq

    from bench.ingest_memory import run
    from radgpt import table
    from radgpt.sample.mimic import write_mimic

    d = where / "bench-mimic"
    shutil.rmtree(d, ignore_errors=True)
    try:
        t = time.perf_counter()
        made = write_mimic(d / "mimic", n, seed=11, bad=False)
        split = trim_split(d / "mimic" / "mimic-cxr-2.0.0-split.csv.gz", split_rows)
        write_s = time.perf_counter() - t
        (d / "events").mkdir()
        sets = ("spark.conf.spark.eventLog.enabled=true", "spark.conf.spark.eventLog.compress=false",
                f"spark.conf.spark.eventLog.dir=file://{d / 'events'}")  # fmt: skip
        load = os.getloadavg()
        r = run(d / "root", [d / "mimic"], sets)
        out = {"n": n, "written": {"seconds": round(write_s, 1), "split_file": split,
               "generator_split_rows": made["split_rows"]}, "ingest": r, "load_before": load,
               "load_after": os.getloadavg()}  # fmt: skip
        if r["rc"]:
            out["log_tail"] = (d / "root" / "ingest.log").read_text()[-3000:]
            return out
        m = json.loads(max((d / "root").glob("runs/*.json"), key=os.path.getmtime).read_text())
        tot = m["counts"]["totals"]
        files = table.committed_files(d / "root" / "table")
        origin = Counter(x for f in files for x in pq.read_table(f, columns=["split_origin"])
                         .column(0).to_pylist())  # fmt: skip
        out |= {"totals": tot, "timings": m["timings"], "table_rows": origin.total(),
                "split_origin": dict(origin), "spark": spilled(d / "events"),
                "reconciled": tot["seen"] == n and origin.total() == tot["new"]
                and set(origin) <= {"official", "duplicate"}}  # fmt: skip
        return out
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--master", default="local[2]", help="--linearity's")
    p.add_argument("--repeat", type=int, default=3, help="measured runs of each size / master")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the Spark runs (--linearity, --parallel)")  # fmt: skip
    p.add_argument("--linearity", metavar="N1,N2", help="one CSV of N1 rows and one of N2")
    p.add_argument("--parallel", type=int, metavar="N", help="N MIMIC reports, local[1] vs [2]")
    p.add_argument("--masters", default="local[1],local[2]", help="--parallel's two masters")
    p.add_argument("--mimic", type=int, metavar="N", help="one ingest of a MIMIC tree of N reports")
    p.add_argument("--split-rows", type=int, default=377_110, help="--mimic's split file rows")
    p.add_argument("--where", type=Path, default=REPO / "var", help="--mimic's data (removed)")
    p.add_argument("--keep", action="store_true", help="keep --mimic's data")
    p.add_argument("--linearity-child", metavar="DIR", help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if a.linearity_child:
        print(json.dumps(linearity_child(Path(a.linearity_child), a.master, a.repeat, a.set)))
        return
    print(f"cores={os.cpu_count()} load={os.getloadavg()} set={a.set}")
    if a.linearity:
        sizes = sorted(int(x) for x in a.linearity.split(","))
        r = run_linearity(sizes, a.master, a.repeat, a.set)
        lo, hi = (str(n) for n in r["sizes"][:: len(r["sizes"]) - 1])
        print(
            f"linearity: one CSV of {lo} rows {r['median_s'][lo]:.2f} s, of {hi} rows "
            f"{r['median_s'][hi]:.2f} s (medians of {a.repeat}, warm session) -> "
            f"time ratio {r['ratio']} for {r['rows_ratio']:g}x rows (per pair "
            f"{r['ratio_per_pair']}); load avg before/after {r['load_before']}/{r['load_after']}"
        )
        for n in (lo, hi):
            print(f"  {n} rows: peak RSS per run: Python driver {r['driver_python_peak_mb'][n]} "
                  f"MB, JVM {r['jvm_peak_mb'][n]} MB")  # fmt: skip
        print(json.dumps(r))
    if a.parallel:
        r = run_parallel(a.parallel, a.masters.split(","), a.repeat, a.set)
        for what in ("parse_stage", "whole_job"):
            x = r[what]
            print(f"{what}: {r['masters'][0]} {x['median_s'][0]:.2f} s, {r['masters'][1]} "
                  f"{x['median_s'][1]:.2f} s (medians of {a.repeat}) -> speed-up {x['speedup']}x, "
                  f"efficiency {x['efficiency']:.0%} (per pair {x['per_pair']})")  # fmt: skip
        print(
            f"cores used by the median run (CPU s of driver, JVM and workers / wall s): "
            f"{r['cores_used']}; load avg before/after {r['load_before']}/{r['load_after']}"
        )
        print(json.dumps(r))
    if a.mimic:
        r = run_mimic(a.mimic, a.split_rows, a.where, a.keep)
        g = r["ingest"]
        print(f"MIMIC tree of {a.mimic} reports + split file of {r['written']['split_file']} "
              f"written in {r['written']['seconds']} s; ingest rc={g['rc']} in {g['seconds']} s; "
              f"peak RSS: tree {g['peak_mb']} MB, Python driver {g['driver_peak_mb']} MB, JVM "
              f"{g['jvm_peak_mb']} MB, Python workers {g['workers_peak_mb']} MB; spark "
              f"{r.get('spark')}; reconciled: {r.get('reconciled')}")  # fmt: skip
        print(json.dumps(r))
        if g["rc"]:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
