"""Ingest benchmark: Spark job vs a plain single-process parse of the same MIMIC-format files.

    .venv/bin/python bench/ingest.py                    # 20,000 reports, local[2]
    .venv/bin/python bench/ingest.py --sizes 20000,100000

Per size N: writes N synthetic MIMIC-CXR reports (radgpt.sample.mimic), then alternates
- Spark: a child process (so its peak memory is its own) starts a session and runs the full ingest
  1 + --repeat times into fresh tables: the first run is end to end (session start-up included),
  the others are steady state (session warm; the median run is reported, and the first warm run
  too, as `first_warm`). Every run does the whole job: parse, rules, splits, dedup, write;
- baseline: before each warm Spark run, this process lists and parses every file once
  (radgpt.ingest.rows.parse_units, no Spark; the Spark session waits idle meanwhile); the median of
  the --repeat runs is reported. Interleaving puts each pair under the same machine load (on a
  shared VM the speed of one process drifts by 20-30% within minutes).
Prints reports/s of each and the ratio Spark steady / baseline, the CPU seconds each kind of
process used in the steady run (driver, JVM, Python workers; JSON `cpu_s`), and the driver's peak memory:
the sampled peak RSS of the Python driver and of the JVM (in local mode the JVM also hosts the
executors, so it is an upper bound of the driver's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def baseline_once(src: Path) -> tuple[int, float]:
    """(reports, seconds) of one single-process list + parse of every file."""
    from radgpt.config import IngestCfg
    from radgpt.ingest.rows import parse_units
    from radgpt.ingest.sources import mimic

    cfg = IngestCfg()
    t = time.perf_counter()
    n = sum(1 for kind, _ in parse_units(mimic.units(src, cfg), cfg) if kind == "report")
    return n, time.perf_counter() - t


def summary(n: int, runs: list[float]) -> dict:
    dt = statistics.median(runs)
    return {"reports": n, "seconds": round(dt, 2), "reports_per_s": round(n / dt, 1),
            "runs_s": [round(r, 2) for r in runs]}  # fmt: skip


def _jvm_peak(stop: threading.Event, out: dict) -> None:
    """Sample RSS of this driver process and of its JVM every 0.2 s; keep the peaks (MB)."""
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        out["py_peak_mb"] = max(out.get("py_peak_mb", 0), me.memory_info().rss / 2**20)
        for c in me.children(recursive=True):
            try:
                if "java" in c.name():
                    out["jvm_peak_mb"] = max(out.get("jvm_peak_mb", 0), c.memory_info().rss / 2**20)
            except psutil.Error:
                pass
        stop.wait(0.2)


def _cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of this process and its descendants, by pid."""
    import psutil

    me, out = psutil.Process(), {}
    for p in [me, *me.children(recursive=True)]:
        try:
            c = p.cpu_times()
            out[p.pid] = ("driver" if p.pid == me.pid else "jvm" if "java" in p.name() else
                          "python_workers", c.user + c.system)  # fmt: skip
        except psutil.Error:
            pass
    return out


def _cpu_delta(a: dict, b: dict) -> dict[str, float]:
    """CPU seconds used between two _cpu() samples, per kind of process."""
    out: dict[str, float] = {}
    for pid, (kind, t) in b.items():
        out[kind] = out.get(kind, 0.0) + t - a.get(pid, (kind, 0.0))[1]
    return {k: round(v, 2) for k, v in sorted(out.items())}


def spark_child(src: Path, work: Path, master: str, repeat: int, sets: list[str]) -> dict:
    from radgpt.config import load_config
    from radgpt.ingest.run import run_ingest
    from radgpt.runtime import setup_logging, spark_session

    setup_logging("WARNING")
    mem: dict = {}
    stop = threading.Event()
    threading.Thread(target=_jvm_peak, args=(stop, mem), daemon=True).start()
    t0 = time.perf_counter()
    runs = []
    for i in range(1 + repeat):
        if i:  # the parent runs a baseline between warm runs, then says go
            sys.stdin.readline()
        root, inputs = ("paths.root", str(work / f"run{i}")), ("ingest.inputs", [str(src)])
        cfg = load_config(None, [root, ("spark.master", master), *sets, inputs], env={})
        t, cpu = time.perf_counter(), _cpu()
        spark = spark_session(cfg)
        m = run_ingest(cfg, spark=spark)
        dt = time.perf_counter() - (t0 if i == 0 else t)
        n = m["counts"]["totals"]["new"]
        parse = m["timings"]["parse_s"]  # the Spark stage that does the same work as the baseline
        runs.append({"reports": n, "seconds": round(dt, 2), "reports_per_s": round(n / dt, 1),
                     "parse_stage_reports_per_s": round(n / parse, 1), "timings": m["timings"],
                     "cpu_s": _cpu_delta(cpu, _cpu())})  # fmt: skip
        shutil.rmtree(work / f"run{i}")
        print(json.dumps({"run": i}), flush=True)
    stop.set()
    warm = sorted(runs[1:], key=lambda r: r["seconds"])
    out = {"end_to_end": runs[0], "steady_state": warm[len(warm) // 2], "first_warm": runs[1],
           "warm_runs_s": [r["seconds"] for r in runs[1:]]}  # fmt: skip
    out["driver_python_peak_mb"] = round(mem.get("py_peak_mb", 0), 1)
    out["jvm_peak_mb"] = round(mem.get("jvm_peak_mb", 0), 1)
    return out


def run_size(n: int, master: str, repeat: int, sets: list[str]) -> dict:
    from radgpt.sample.mimic import write_mimic

    with tempfile.TemporaryDirectory(prefix="radgpt-bench-") as tmp:
        src = Path(tmp) / "mimic"
        write_mimic(src, n, seed=11, bad=False)
        log = open(Path(tmp) / "child.err", "w+")  # noqa: SIM115 - a file: a full pipe would block
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", str(src), str(Path(tmp) / "work"), "--master", master,
             "--repeat", str(repeat), *(f"--set={x}" for x in sets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        base, lines = [], []
        for i in range(1 + repeat):
            if i:  # one baseline run right before each warm Spark run: same machine load
                n_base, dt = baseline_once(src)
                base.append(dt)
                child.stdin.write("go\n")
                child.stdin.flush()
            lines.append(child.stdout.readline())
            if not lines[-1]:  # the child died: stop here, do not write to its closed pipe
                break
        child.stdin.close()
        out = child.stdout.read()  # not communicate(): it would skip what readline buffered
        child.wait()
        if child.returncode or not lines[-1]:
            log.seek(0)
            raise SystemExit(f"spark child failed:\n{log.read()[-3000:]}")
        log.close()
        sp = json.loads(out.strip().splitlines()[-1])
    pairs = [round(b / s, 2) for b, s in zip(base, sp["warm_runs_s"], strict=True)]
    base = summary(n_base, base)
    ratio = sp["steady_state"]["reports_per_s"] / base["reports_per_s"]
    parse_ratio = sp["steady_state"]["parse_stage_reports_per_s"] / base["reports_per_s"]
    return {"n": n, "baseline": base, "spark": sp, "ratio_steady_vs_baseline": round(ratio, 2),
            "ratio_parse_stage_vs_baseline": round(parse_ratio, 2),
            "ratio_per_pair": pairs}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="20000", help="comma-separated report counts")
    p.add_argument("--master", default="local[2]")
    p.add_argument(
        "--repeat", type=int, default=3, help="warm Spark runs, each after a baseline run"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for the Spark runs, e.g. "
        "--set=spark.conf.spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1",
    )
    p.add_argument("--child", nargs=2, metavar=("SRC", "WORK"), help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if a.child:
        print(
            json.dumps(spark_child(Path(a.child[0]), Path(a.child[1]), a.master, a.repeat, a.set))
        )
        return
    print(f"cores={os.cpu_count()} master={a.master} set={a.set}")
    for n in (int(s) for s in a.sizes.split(",")):
        r = run_size(n, a.master, a.repeat, a.set)
        b, s = r["baseline"], r["spark"]
        print(
            f"N={n}: single-process {b['reports_per_s']}/s | spark end-to-end "
            f"{s['end_to_end']['reports_per_s']}/s ({s['end_to_end']['seconds']} s) | spark steady "
            f"{s['steady_state']['reports_per_s']}/s ({s['steady_state']['seconds']} s, median of "
            f"warm runs {s['warm_runs_s']}) | "
            f"ratio steady/single {r['ratio_steady_vs_baseline']}x (whole job; per pair "
            f"{r['ratio_per_pair']}), "
            f"{r['ratio_parse_stage_vs_baseline']}x (parse stage) | CPU s of the steady run "
            f"{s['steady_state']['cpu_s']} (baseline {b['seconds']}) | driver python peak "
            f"{s['driver_python_peak_mb']} MB, JVM peak {s['jvm_peak_mb']} MB"
        )
        print(json.dumps(r))


if __name__ == "__main__":
    main()
