"""Shared runtime plumbing: logging, code version, ids, hashes, atomic JSON, bounded calls.

The Spark session and the Ray a run works in: radgpt.cluster.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import subprocess
import threading
import uuid
from pathlib import Path

from radgpt import __version__

log = logging.getLogger("radgpt")
REPO = Path(__file__).resolve().parent.parent


def setup_logging(level: str | int = "INFO") -> None:
    """INFO logs counts, ids, paths and timings only: never report text (patient data).

    `level` applies to radgpt's own loggers; every other library logs at WARNING and above
    (py4j logs a benign retry on a reset connection as a root-logger INFO with a traceback).
    """
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("radgpt").setLevel(level)


@functools.cache
def git_commit() -> str:
    if os.environ.get("RADGPT_GIT_COMMIT"):
        return os.environ["RADGPT_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> str:
    return f"radgpt {__version__}+{git_commit()[:12]}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(prefix: str) -> str:
    """Sortable, unique: <prefix>-YYYYmmddTHHMMSSZ-<6 hex>."""
    return f"{prefix}-{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write JSON to a temp file then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def bounded(fn, timeout_s: float) -> bool:
    """fn() in a helper thread, waited for at most timeout_s; True when it finished.

    After a signal interrupted a py4j call in the main thread, that thread's gateway connection
    may still wait for the call's answer; a fresh thread talks to the JVM on its own connection.
    """
    t = threading.Thread(target=fn, name="radgpt-stop", daemon=True)
    t.start()
    t.join(timeout_s)
    return not t.is_alive()


def quietly(fn) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - best effort on the way out; the JVM may be gone
        log.debug("on the way out: %s", e)
