"""Memory of a whole process tree, for the benchmarks (bench/ingest_memory.py, bench/infer.py).

    from proctree import run_sampled, tree_mb       # bench/ is the script's dir: on sys.path
    rc, seconds, peak = run_sampled(cmd, log_path)   # a child process, its tree sampled every 0.1 s
    peak.rss_mb, peak.pss_mb                         # PSS when run_sampled(..., pss=True)

`time -v` sees one process: a drafting run's Ray processes (GCS, raylet, the actor and other
workers) or a Spark JVM are its children. The tree is the process and all its descendants, summed:
RSS (what `ps` shows; shared pages, such as torch's libraries mapped in every Ray worker, count once
per process) and, with pss, PSS (shared pages split between the processes that map them: the
tree's share of memory, no double count).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path


def tree_mb(pid: int, pss: bool = False) -> float:
    """Summed RSS (or PSS) in MB of a process and all its descendants."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_full_info().pss if pss else q.memory_info().rss
        except psutil.Error:  # gone meanwhile, or not ours to read
            pass
    return total / 2**20


def kinds_mb(pid: int) -> dict[str, float]:
    """RSS in MB of a process tree by kind: `root` (the process itself), `jvm` (java
    descendants: a Spark driver, with the executors in local mode), `other` (the rest: Spark's
    Python workers, Ray's processes)."""
    import psutil

    out = dict.fromkeys(("root", "jvm", "other"), 0.0)
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return out
    for q in procs:
        try:
            kind = "root" if q.pid == pid else "jvm" if "java" in q.name() else "other"
            out[kind] += q.memory_info().rss / 2**20
        except psutil.Error:  # gone meanwhile, or not ours to read
            pass
    return out


class Peak:
    """Samples a process tree every `every` s in a thread while in the block: .rss_mb, .pss_mb,
    and with kinds=True .kinds_mb (the peak of each of kinds_mb's sums)."""

    def __init__(self, pid: int, every: float = 0.1, pss: bool = True, kinds: bool = False):
        self.pid, self.every, self.pss, self.kinds = pid, every, pss, kinds
        self.rss_mb = self.pss_mb = 0.0
        self.kinds_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.rss_mb = max(self.rss_mb, tree_mb(self.pid))
            if self.pss and i % 5 == 0:  # smaps_rollup walks page tables: every 5th sample
                self.pss_mb = max(self.pss_mb, tree_mb(self.pid, pss=True))
            if self.kinds:
                for k, v in kinds_mb(self.pid).items():
                    self.kinds_mb[k] = max(self.kinds_mb.get(k, 0.0), v)
            i += 1
            self._stop.wait(self.every)

    def __enter__(self) -> Peak:
        self._th.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._th.join()


def run_sampled(
    cmd: list[str], log_path: Path, *, cwd=None, env=None, pss: bool = False, kinds: bool = False
):
    """Run cmd (stdout + stderr to log_path); (exit code, wall seconds, Peak of its tree)."""
    t0 = time.perf_counter()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        with Peak(p.pid, pss=pss, kinds=kinds) as peak:
            rc = p.wait()
    return rc, time.perf_counter() - t0, peak
