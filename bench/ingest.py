"""Ingest benchmark: Spark job vs a plain single-process parse of the same MIMIC-format files.

    .venv/bin/python bench/ingest.py                    # 20,000 reports, local[2]
    .venv/bin/python bench/ingest.py --sizes 20000,100000
    .venv/bin/python bench/ingest.py --incremental 100000,1000   # an incremental night (issue 18)

Per size N: writes N synthetic MIMIC-CXR reports (radgpt.sample.mimic), then alternates
- Spark: a child process (so its peak memory is its own) starts a session and runs the full ingest
  1 + --repeat times into fresh tables: the first run is end to end (session start-up included),
  the others are steady state (session warm; the median run is reported, and the first warm run
  too, as `first_warm`). Every run does the whole job: parse, rules, splits, dedup, write;
- baseline: before each warm Spark run, this process lists and parses every file once
  (radgpt.ingest.rows.parse_units, no Spark; the Spark session waits idle meanwhile); the median of
  the --repeat runs is reported. Interleaving puts each pair under the same machine load (on a
  shared VM the speed of one process drifts by 20-30% within minutes).
`--incremental N,NEW` measures an incremental night instead (issue 18): N synthetic CSV reports in
N / NEW nightly export files are ingested once; then, --repeat times from copies of that table,
the next night (those files + one new export of NEW reports) runs with the input ledger (the N are
skipped unparsed) and reading every input (`--full`, what every night cost before the ledger),
alternating which runs first, in one warm Spark session; it prints both medians, their ratio and
whether the two tables afterwards are the same (every column but the run's id and time).
(Linearity, local[1] vs local[2] and a MIMIC-size run: bench/ingest_scale.py.)
Otherwise it prints reports/s of each and the ratio Spark steady / baseline, the CPU seconds each kind of
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


class Peaks:
    """Samples the RSS of this process (the Python driver) and of its JVM child every 0.2 s in a
    thread; take() gives the peaks (MB) since the previous take(), `total` those of the whole run.
    In local mode the JVM hosts the executors too: its peak bounds the JVM driver's from above."""

    def __init__(self) -> None:
        self.now: dict[str, float] = {}
        self.total: dict[str, float] = {}
        self._lock, self._stop = threading.Lock(), threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            got = {"py_peak_mb": me.memory_info().rss / 2**20}
            for c in me.children(recursive=True):
                try:
                    if "java" in c.name():
                        mb = c.memory_info().rss / 2**20
                        got["jvm_peak_mb"] = max(got.get("jvm_peak_mb", 0), mb)
                except psutil.Error:
                    pass
            with self._lock:
                for d in (self.now, self.total):
                    for k, v in got.items():
                        d[k] = max(d.get(k, 0.0), v)
            self._stop.wait(0.2)

    def take(self) -> dict[str, float]:
        with self._lock:
            out, self.now = self.now, {}
        return {k: round(v, 1) for k, v in out.items()}

    def stop(self) -> dict[str, float]:
        self._stop.set()
        return {k: round(v, 1) for k, v in self.total.items()}


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
    from radgpt.cluster import spark_session
    from radgpt.config import load_config
    from radgpt.ingest.run import run_ingest
    from radgpt.runtime import setup_logging

    setup_logging("WARNING")
    peaks = Peaks()
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
    mem = peaks.stop()
    warm = sorted(runs[1:], key=lambda r: r["seconds"])
    return {"end_to_end": runs[0], "steady_state": warm[len(warm) // 2], "first_warm": runs[1],
            "warm_runs_s": [r["seconds"] for r in runs[1:]],
            "warm_parse_s": [round(r["timings"]["parse_s"], 2) for r in runs[1:]],
            "driver_python_peak_mb": mem.get("py_peak_mb", 0),
            "jvm_peak_mb": mem.get("jvm_peak_mb", 0)}  # fmt: skip


class SparkChild:
    """A `--child` process (spark_child): its end-to-end run starts at once and __init__ waits for
    it; each go() runs one warm run and waits for it; result() is the child's JSON."""

    def __init__(self, src: Path, work: Path, master: str, repeat: int, sets: list[str]) -> None:
        self.log = open(work.with_name(work.name + ".err"), "w+")  # noqa: SIM115 - a full pipe blocks
        self.p = subprocess.Popen(
            [sys.executable, __file__, "--child", str(src), str(work), "--master", master,
             "--repeat", str(repeat), *(f"--set={x}" for x in sets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )  # fmt: skip
        self._line()

    def _line(self) -> None:
        if not self.p.stdout.readline():  # the child died: do not write to its closed pipe
            self._fail()

    def go(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        self._line()

    def result(self) -> dict:
        self.p.stdin.close()
        out = self.p.stdout.read()  # not communicate(): it would skip what readline buffered
        if self.p.wait():
            self._fail()
        self.log.close()
        return json.loads(out.strip().splitlines()[-1])

    def _fail(self) -> None:
        self.p.kill()
        self.p.wait()
        self.log.seek(0)
        raise SystemExit(f"spark child failed:\n{self.log.read()[-3000:]}")


def run_size(n: int, master: str, repeat: int, sets: list[str]) -> dict:
    from radgpt.sample.mimic import write_mimic

    with tempfile.TemporaryDirectory(prefix="radgpt-bench-") as tmp:
        src = Path(tmp) / "mimic"
        write_mimic(src, n, seed=11, bad=False)
        child, base = SparkChild(src, Path(tmp) / "work", master, repeat, sets), []
        for _ in range(repeat):  # one baseline run right before each warm Spark run: same load
            n_base, dt = baseline_once(src)
            base.append(dt)
            child.go()
        sp = child.result()
    pairs = [round(b / s, 2) for b, s in zip(base, sp["warm_runs_s"], strict=True)]
    base = summary(n_base, base)
    ratio = sp["steady_state"]["reports_per_s"] / base["reports_per_s"]
    parse_ratio = sp["steady_state"]["parse_stage_reports_per_s"] / base["reports_per_s"]
    return {"n": n, "baseline": base, "spark": sp, "ratio_steady_vs_baseline": round(ratio, 2),
            "ratio_parse_stage_vs_baseline": round(parse_ratio, 2),
            "ratio_per_pair": pairs}  # fmt: skip


def write_nights(d: Path, n: int, batch: int) -> None:
    """n synthetic CSV reports as n / batch nightly export files of `batch` reports (distinct
    report ids) in d/incoming, and one more night's file (`batch` new reports) beside it."""
    import csv
    import io

    from radgpt.sample.csvx import csv_text, write_csv

    write_csv(d / "all", n + batch, seed=11, bad=False)
    text = (d / "all" / "reports.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))[1:]
    (d / "incoming").mkdir(parents=True)
    for k in range(0, len(rows), batch):
        night = d / ("new" if k >= n else "incoming") / f"export-{k // batch:05d}.csv"
        night.parent.mkdir(exist_ok=True)
        night.write_text(csv_text(rows[k : k + batch]), encoding="utf-8")
    shutil.rmtree(d / "all")


def incremental_child(d: Path, master: str, repeat: int, sets: list[str]) -> dict:
    """In one warm session: ingest the n reports once (`base`); then, `repeat` times from copies
    of that table, the next night (the n files + the new one) with the ledger (skip_unchanged)
    and reading every input (--full), alternating which goes first; tables compared."""
    from radgpt import table
    from radgpt.cluster import spark_session
    from radgpt.config import load_config
    from radgpt.ingest.run import run_ingest
    from radgpt.runtime import setup_logging

    setup_logging("WARNING")
    incoming, new = d / "incoming", next((d / "new").iterdir())

    def cfg(root: Path, skip: bool = True):
        sets_ = [("paths.root", str(root)), ("spark.master", master), *sets,
                 ("ingest.inputs", [str(incoming)]), ("ingest.skip_unchanged", skip)]  # fmt: skip
        return load_config(None, sets_, env={})

    spark = spark_session(cfg(d / "base"))
    t = time.perf_counter()
    m = run_ingest(cfg(d / "base"), spark=spark)
    base = {"reports": m["counts"]["totals"]["new"], "seconds": round(time.perf_counter() - t, 2)}
    shutil.copy2(new, incoming / new.name)  # tonight's export lands beside the others
    runs = {"ledger": [], "full": []}
    same = True
    for i in range(repeat):
        order = ("ledger", "full") if i % 2 == 0 else ("full", "ledger")
        got = {}
        for kind in order:
            root = d / f"{kind}-{i}"
            shutil.copytree(d / "base", root)
            c = cfg(root, skip=kind == "ledger")
            t = time.perf_counter()
            m = run_ingest(c, spark=spark)
            runs[kind].append({"seconds": round(time.perf_counter() - t, 2),
                               "totals": m["counts"]["totals"], "timings": m["timings"]})  # fmt: skip
            rows = table.read_reports(c, all_versions=True)
            keep = [x for x in rows.column_names if x not in ("ingest_run_id", "ingested_at")]
            got[kind] = rows.select(keep).sort_by([("report_id", "ascending")])
            shutil.rmtree(root)
        same = same and got["ledger"].equals(got["full"])
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    return {"n": base["reports"], "new": runs["ledger"][0]["totals"]["new"], "base": base,
            "ledger": runs["ledger"], "full": runs["full"], "median_s": med,
            "ratio_full_vs_ledger": round(med["full"] / med["ledger"], 2),
            "ratio_per_pair": [round(f["seconds"] / g["seconds"], 2)
                               for f, g in zip(runs["full"], runs["ledger"], strict=True)],
            "same_table": same}  # fmt: skip


def child_json(script: str, mode: str, d: str, master: str, repeat: int, sets: list[str]) -> dict:
    """Run `script mode d` in a child process (its own JVM and peak memory); its last JSON line."""
    cmd = [sys.executable, script, mode, d, "--master", master, "--repeat", str(repeat),
           *(f"--set={x}" for x in sets)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"spark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_incremental(n: int, batch: int, master: str, repeat: int, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="radgpt-bench-") as tmp:
        write_nights(Path(tmp), n, batch)
        return child_json(__file__, "--incremental-child", tmp, master, repeat, sets)


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
    p.add_argument(
        "--incremental",
        metavar="N,NEW",
        help="instead: an incremental night, N reports already ingested (nightly CSV exports of "
        "NEW reports each) + one new export of NEW, with the input ledger vs reading every input "
        "(--full), same table afterwards, e.g. --incremental 100000,1000",
    )
    p.add_argument("--child", nargs=2, metavar=("SRC", "WORK"), help=argparse.SUPPRESS)
    p.add_argument("--incremental-child", metavar="DIR", help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if a.incremental_child:
        print(json.dumps(incremental_child(Path(a.incremental_child), a.master, a.repeat, a.set)))
        return
    if a.incremental:
        n, new = (int(x) for x in a.incremental.split(","))
        print(f"cores={os.cpu_count()} master={a.master} set={a.set}")
        r = run_incremental(n, new, a.master, a.repeat, a.set)
        print(
            f"incremental night: {r['n']} reports ingested in {r['n'] // new} exports + 1 new "
            f"export of {r['new']}: ledger {r['median_s']['ledger']:.2f} s, every input read "
            f"{r['median_s']['full']:.2f} s (medians of {a.repeat}) -> "
            f"{r['ratio_full_vs_ledger']}x (per pair {r['ratio_per_pair']}); same table: "
            f"{r['same_table']}; first ingest of the {r['n']}: {r['base']['seconds']} s"
        )
        print(json.dumps(r))
        return
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
