"""Every way out: SIGTERM mid-ingest and mid-draft (real `python -m radgpt` processes) leaves no
work file, no selection and no child process; a local Spark and Ray listen on loopback only.

    .venv/bin/pytest tests/test_exits.py -q             # SIGTERM mid-ingest, ports, in-process
    .venv/bin/pytest tests/test_exits.py -q -m slow     # SIGTERM mid-draft (Ray, tiny model)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radgpt.exits import Terminated, exit_on_sigterm, terminating

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process under pid (psutil, else /proc)."""
    try:
        import psutil

        return [(p.pid, str(p.create_time())) for p in psutil.Process(pid).children(True)]
    except ImportError:
        pass
    tree: dict[int, list[int]] = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(d))
    out, todo = [], list(tree.get(pid, []))
    while todo:
        p = todo.pop()
        out.append((p, _started(p)))
        todo += tree.get(p, [])
    return out


def _started(pid: int) -> str | None:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if f[0] == "Z" else f[19]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def alive(procs: list[tuple[int, str]]) -> list[int]:
    """Those of procs still running (not gone, not a zombie, not a reused pid)."""
    try:
        import psutil
    except ImportError:
        return [p for p, t in procs if _started(p) == t]
    out = []
    for p, t in procs:
        try:
            q = psutil.Process(p)
            if str(q.create_time()) == t and q.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def terminate_when(cmd: list[str], ready, timeout_s: float = 240) -> dict:
    """Start cmd, send SIGTERM once ready(process) is true, and report how it ended."""
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + timeout_s
    while not ready(p) and p.poll() is None and time.monotonic() < end:
        time.sleep(0.1)
    assert p.poll() is None, f"finished before it could be stopped:\n{p.stdout.read()[-3000:]}"
    kids = descendants(p.pid)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    took = time.monotonic() - t0
    end = time.monotonic() + 15  # anything left is killed by the command's watchdog within 5 s
    while alive(kids) and time.monotonic() < end:
        time.sleep(0.5)
    return {"rc": p.returncode, "seconds": took, "out": out, "kids": kids, "left": alive(kids)}


def test_sigterm_mid_ingest_removes_the_work_files_and_stops_spark(tmp_path):
    from radgpt.sample.csvx import csv_text

    f = "The heart size is normal. The lungs are clear. No pleural effusion. Case {}."
    rows = [(i, "", "", "Xray Chest PA and Lateral", "", "", f.format(i), "No acute disease.")
            for i in range(1, 100_001)]  # fmt: skip
    (tmp_path / "in.csv").write_text(csv_text(rows))
    table = tmp_path / "var" / "table"
    cmd = [sys.executable, "-m", "radgpt", "ingest", "--set", f"paths.root={tmp_path / 'var'}",
           str(tmp_path / "in.csv")]  # fmt: skip
    # parse tasks are writing the parsed report text: mid-run
    r = terminate_when(cmd, lambda p: any(table.glob("_work-*/parsed-*")))
    assert r["rc"] == 143, r["out"][-3000:]
    assert r["seconds"] < 60
    assert "stopped by SIGTERM" in r["out"]
    assert len(r["kids"]) >= 2  # the JVM and its Python workers
    assert r["left"] == [], r["out"][-3000:]
    quarantine = tmp_path / "var" / "quarantine"
    assert not [*table.glob("_work-*"), *table.glob("_staging-*"), *quarantine.glob("_staging-*")]
    assert not list(table.rglob("*.parquet")) and not list(table.rglob("*.arrow"))


@pytest.mark.slow
def test_sigterm_mid_draft_removes_the_selection_and_stops_ray(tmp_path, tiny_model_dir):
    from test_infer import write_reports

    root = tmp_path / "var"
    write_reports(root / "table", 400)
    cmd = [sys.executable, "-m", "radgpt", "draft", "--set", f"paths.root={root}",
           "--set", f"model.base={tiny_model_dir}", "--adapter", "none", "--limit", "300",
           "--set", "draft.max_new_tokens=64", "--set", "draft.executor=ray"]  # fmt: skip
    runs = root / "runs"

    def drafting(p) -> bool:  # the selection is written and Ray's workers are up
        return any(runs.glob("draft-*/selection.parquet")) and any(
            "ray::" in cmdline(pid) for pid, _ in descendants(p.pid)
        )

    r = terminate_when(cmd, drafting)
    assert r["rc"] == 143, r["out"][-3000:]
    assert r["seconds"] < 60 and r["left"] == [], r["out"][-3000:]
    assert not list(runs.glob("draft-*/"))  # the selection (Findings text) is gone
    assert not list((root / "drafts").glob("_staging-*"))


LISTEN = """
import json, os
import psutil
from radgpt.config import load_config
from radgpt.cluster import init_ray, spark_session
cfg = load_config(None, {"ray.num_cpus": 1, "spark.master": "local[1]"}, env={})
spark = spark_session(cfg)
spark.range(10).selectExpr("sum(id)").collect()
ray = init_ray(cfg)
ray.get(ray.remote(lambda: 1).remote())
me = psutil.Process()
pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
conns = [c for c in psutil.net_connections("all") if c.pid in pids and c.status == "LISTEN"]
token = os.path.expanduser("~/.ray/auth_token")
print("LISTEN " + json.dumps({
    "tcp": sorted({(c.laddr.ip, c.laddr.port) for c in conns if c.type == 1 and c.family != 1}),
    "ui": spark.conf.get("spark.ui.enabled"),
    "token_mode": oct(os.stat(token).st_mode & 0o777) if os.path.exists(token) else None,
}))
"""


def test_a_local_spark_and_ray_listen_on_loopback_only(tmp_path):
    pytest.importorskip("psutil")
    script = tmp_path / "listen.py"
    script.write_text(LISTEN)
    out = subprocess.run([sys.executable, str(script)], env=ENV, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    lines = [x for x in out.stdout.splitlines() if x.startswith("LISTEN ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    got = json.loads(lines[0].removeprefix("LISTEN "))
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    assert got["tcp"] and all(ip in loopback for ip, _ in got["tcp"]), got["tcp"]
    assert got["ui"] == "false"
    assert got["token_mode"] in (None, "0o600")


def test_sigterm_raises_terminated_in_the_block_and_the_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    ran = []
    with pytest.raises(Terminated) as e:
        with exit_on_sigterm():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                ran.append("finally")
    assert e.value.code == 143 and ran == ["finally"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_error_or_a_swallowed_signal_after_sigterm_still_ends_in_terminated():
    with pytest.raises(Terminated) as e:  # what py4j raises for a call the signal cut short
        with exit_on_sigterm():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except BaseException:
                assert terminating()
                raise RuntimeError("Answer from Java side is empty") from None
    assert isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(Terminated):  # swallowed by an `except BaseException` on its way
        with exit_on_sigterm():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except BaseException:
                pass


def test_a_sigterm_of_an_ended_block_does_not_reach_the_next():
    """The first block's forwarder wakes (0.2 s after the signal) while the second block runs:
    the signal was the first block's and was handled there."""
    with pytest.raises(Terminated):
        with exit_on_sigterm():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    with exit_on_sigterm():
        time.sleep(1)
    assert not terminating()
