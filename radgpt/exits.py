"""Every way out of a command stops what it started and removes what it wrote on the way.

    with exit_on_sigterm(), stopping_sessions():   # what radgpt.cli.main does around a command
        run_ingest(cfg)

`exit_on_sigterm`: SIGTERM (a scheduler's stop, `kill`, Kubernetes) raises Terminated, a
SystemExit, in the main thread, so that every `finally` runs: ingest work files, staged rows and
drafting selections (report text) are removed, locks released. `stopping_sessions`: then the
Spark JVM with its Python workers and the local Ray this command started are stopped, and any
process they left behind is killed. SIGKILL cannot be caught: the next run removes the files
(radgpt.table.recover under the table's lock; radgpt.draft.run.sweep_stages).
docs/operations.md, "Exits".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

from radgpt.cluster import stop_spark
from radgpt.runtime import quietly

log = logging.getLogger("radgpt.exits")


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread under `exit_on_sigterm` (exit code 143). A SystemExit:
    `finally` blocks run, `except Exception` does not catch it."""


_handled = threading.Event()  # _on_sigterm ran (the forwarder then has nothing to do)


def terminating() -> bool:
    """True once SIGTERM was handled under `exit_on_sigterm` (the block raises Terminated)."""
    return _handled.is_set()


def _on_sigterm(signum, frame):
    _handled.set()
    signal.signal(signum, _again)  # one is enough: cleanup runs, a second signal is not stacked
    sc = _sessions()[0]
    if sc is not None:  # the main thread may wait in a py4j call for a whole job: cancel it
        threading.Thread(target=quietly, args=(sc.cancelAllJobs,), daemon=True).start()
    raise Terminated(128 + signum)


def _again(signum, frame):
    log.warning("signal %d again: already stopping (work files, Spark, Ray)", signum)


_forwarding = threading.Lock()


def _forward(r: int, ended: threading.Event) -> None:
    """The wakeup fd's reader: a SIGTERM that another thread took (the kernel picks any thread)
    leaves the main thread blocked in a system call, e.g. waiting on the Spark JVM for a whole
    job; sent again to the main thread, once, it interrupts that call and the handler runs.
    Not once its block has ended (`ended`): a later block of the same process, which clears
    `_handled`, would take that signal as its own."""
    sent = False
    with open(r, "rb", buffering=0) as f:  # closed at EOF: the block's end closed the write end
        while data := f.read(64):
            if signal.SIGTERM in data and not sent:
                time.sleep(0.2)
                with _forwarding:  # the block does not end between the check and the send
                    if not _handled.is_set() and not ended.is_set():
                        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
                sent = True


@contextlib.contextmanager
def exit_on_sigterm():
    """While the block runs, SIGTERM raises Terminated in the main thread instead of killing the
    process outright, so that work files are removed and child processes stopped on the way
    out. Only where SIGTERM would kill (the default handler) or is already ours; the previous
    handler comes back after the block. A no-op outside the main thread.

    The signal's wakeup fd feeds `_forward`, which makes sure the main thread sees the signal
    (not where the process has a wakeup fd of its own, e.g. an asyncio loop on the main thread);
    the handler cancels running Spark jobs (from a helper thread), so a py4j call the main thread
    waits in ends. Whatever the block then raises, or if it swallowed the signal, it ends in
    Terminated.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    prev = signal.getsignal(signal.SIGTERM)
    if prev is not signal.SIG_DFL:  # ours already (nested), or someone else's choice: kept
        yield
        return
    _handled.clear()
    ended = threading.Event()
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    if old_fd != -1:
        signal.set_wakeup_fd(old_fd)
    else:
        threading.Thread(
            target=_forward, args=(r, ended), name="radgpt-sigterm", daemon=True
        ).start()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
        if terminating():  # swallowed on its way (by an `except Exception` it went through)
            raise Terminated(128 + signal.SIGTERM)
    except Exception as e:
        if terminating():  # a call the signal cut short failed in its own way (py4j)
            raise Terminated(128 + signal.SIGTERM) from e
        raise
    finally:
        with _forwarding:
            ended.set()
        signal.signal(signal.SIGTERM, prev)
        if old_fd == -1:
            signal.set_wakeup_fd(-1)
        os.close(w)  # the forwarder reads EOF and ends
        if old_fd != -1:
            os.close(r)


def _sessions() -> tuple:
    """(the active SparkContext or None, whether Ray is initialized), without importing either."""
    sc = (
        sys.modules["pyspark"].SparkContext._active_spark_context
        if "pyspark" in sys.modules
        else None
    )
    return sc, "ray" in sys.modules and sys.modules["ray"].is_initialized()


@contextlib.contextmanager
def stopping_sessions():
    """On the way out of the block (SIGTERM and Ctrl-C included), stop the Spark session and the
    Ray it started, not ones that ran before it: the JVM, its Python workers and Ray's processes
    end with the command. Then every process under a child this block started (not the children
    of Spark or Ray that ran before it) that is still there after a few seconds is killed."""
    sc0, ray0 = _sessions()
    before = set(_children().get(os.getpid(), []))
    try:
        yield
    finally:
        new = [p for p in _children().get(os.getpid(), []) if p not in before]
        ours = _subtrees(new, _children())  # before stopping: orphans lose their parent
        _watch(ours)  # Ray may end this process abruptly while it stops (a thread of its own)
        sc = _sessions()[0]
        if sc is not None and sc is not sc0:
            stop_spark(sc)  # no SparkSession(sc): that calls the JVM from this thread
        if "ray" in sys.modules and not ray0:  # also a Ray whose start was cut short
            try:
                sys.modules["ray"].shutdown(wait_for_processes=True)  # its agents too
            except TypeError:  # Ray before 2.5x: no wait_for_processes
                sys.modules["ray"].shutdown()
        _reap(ours)


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every process (psutil, else /proc)."""
    tree: dict[int, list[int]] = {}
    try:
        import psutil

        for p in psutil.process_iter(["ppid"]):
            tree.setdefault(p.info["ppid"], []).append(p.pid)
        return tree
    except ImportError:
        pass
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{d}/stat") as f:  # "pid (comm) state ppid ..."
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(d))
    return tree


def _subtrees(roots: list[int], tree: dict[int, list[int]]) -> set[int]:
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += tree.get(pid, [])
    return out


def _reap(pids: set[int], grace_s: float = 5.0) -> None:
    """Kill what is left of pids after grace_s (processes that ignore SIGTERM: Ray's agents)."""
    end = time.monotonic() + grace_s
    while pids and time.monotonic() < end:
        time.sleep(0.2)
        pids = {p for p in pids if _alive(p)}
    for p in pids:
        log.warning("killing pid %d, left behind by the command", p)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


def _start(pid: int) -> str | None:
    """A process's start time (/proc/<pid>/stat field 22); None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


# outlives the command: once its parent has gone, waits `grace` and kills what is left of the
# listed processes (pid:start time, so that a reused pid is never hit)
_WATCHDOG = """
parent, grace = int(sys.argv[1]), float(sys.argv[2])
while _start(parent):
    time.sleep(0.2)
time.sleep(grace)
for arg in sys.argv[3:]:
    pid, when = arg.split(":")
    if _start(pid) == when:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
"""


def _watch(pids: set[int], grace_s: float = 5.0) -> None:
    """Start the watchdog (_WATCHDOG) for pids; Linux (/proc) only."""
    listed = [f"{p}:{t}" for p in sorted(pids) if (t := _start(p))]
    if not listed:
        return
    import inspect
    import subprocess

    code = "import os, signal, sys, time\n" + inspect.getsource(_start) + _WATCHDOG
    subprocess.Popen(
        [sys.executable, "-I", "-c", code, str(os.getpid()), str(grace_s), *listed],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def _alive(pid: int) -> bool:
    if os.path.isdir("/proc"):
        return _start(pid) is not None  # a zombie is gone
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
