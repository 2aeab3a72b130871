"""One writer per table: radgpt.table.locked on <table>/_lock (fcntl.flock), held by a second
process here, as a second ingest or drafting run would hold it.

    .venv/bin/pytest tests/test_locks.py -q      # seconds, no Spark, no Ray
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_writeback import rows

from radgpt import cli, table
from radgpt.config import load_config
from radgpt.draft.run import sweep_stages
from radgpt.ingest.run import run_ingest
from radgpt.table import TableBusy, locked
from radgpt.writeback import drafts

REPO = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from radgpt.table import locked
with locked(sys.argv[1], sys.argv[2], 0, "ingest"):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


@contextlib.contextmanager
def holder(root: Path, run_id: str = "ingest-other", seconds: float = 120):
    """Another process holding root's lock for `seconds` (killed at the end of the block)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), run_id, str(seconds)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert p.stdout.readline().strip() == "held"
        yield p
    finally:
        p.kill()
        p.wait()


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    with holder(tmp_path) as p:
        t0 = time.monotonic()
        with pytest.raises(TableBusy) as e, locked(tmp_path, "ingest-me", 0, "ingest"):
            pass
        assert time.monotonic() - t0 < 2
    msg = str(e.value)
    for part in ("ingest-other", f"pid {p.pid}", f"host {socket.gethostname()}", "since 20"):
        assert part in msg, msg
    assert "ingest.lock_wait_s" in msg  # says how to wait instead


def test_a_waiting_writer_gets_the_lock_when_the_holder_ends(tmp_path):
    with holder(tmp_path, seconds=1.5):
        t0 = time.monotonic()
        with locked(tmp_path, "ingest-me", 60, "ingest") as me:
            waited = time.monotonic() - t0
            assert table.holder(tmp_path) == me and me["pid"] == os.getpid()
    assert 0.5 < waited < 30
    assert table.holder(tmp_path) is None  # released: nobody named


def test_a_killed_holder_frees_the_lock(tmp_path):
    with holder(tmp_path) as p:
        p.kill()  # SIGKILL: no cleanup of its own
        p.wait()
        with locked(tmp_path, "ingest-me", 0):
            pass


def test_an_ingest_on_a_locked_table_fails_fast_and_leaves_the_live_runs_files(tmp_path):
    """The second run's recovery would delete the first run's work folder: it never runs."""
    cfg = load_config(None, {"paths.root": str(tmp_path), "ingest.inputs": [str(tmp_path)]}, env={})
    root = cfg.path("table")
    live = [root / "_work-ingest-other" / "parsed-00000.arrow",
            root / "_staging-ingest-other" / "source=csv" / "part-00000.parquet"]  # fmt: skip
    for f in live:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"a live run's file")
    with holder(root):
        t0 = time.monotonic()
        with pytest.raises(TableBusy, match="ingest-other"):
            run_ingest(cfg)  # no session given: fails before starting Spark
        assert time.monotonic() - t0 < 5
    assert all(f.is_file() for f in live)


def test_the_cli_exits_75_with_the_holder_named(tmp_path, capfd):
    root = tmp_path / "table"
    with holder(root):
        rc = cli.main(["ingest", "--set", f"paths.root={tmp_path}", str(tmp_path)])
    err = capfd.readouterr().err  # the CLI's logging goes to stderr
    assert rc == 75 and "locked by run ingest-other" in err, err


def test_a_drafts_commit_waits_for_another_and_never_touches_its_staging(tmp_path):
    d = tmp_path / "drafts"
    theirs = table.staging_dir(d, "draft-other") / "run_date=2024-05-01" / "part.parquet"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"staged by a live run")
    with holder(d, "draft-other", seconds=1.5):
        with pytest.raises(TableBusy, match="draft-other"):
            drafts.commit_drafts(rows(2), d, "draft-b", lock_wait_s=0)
        assert theirs.is_file()  # its recovery did not run
        m = drafts.commit_drafts(rows(2), d, "draft-b", lock_wait_s=60)  # waits, then commits
    assert m["rows"] == 2 and len(drafts.read_drafts(d)) == 2
    assert not theirs.exists()  # the holder is gone: its leftovers are a crashed run's


def test_selection_folders_of_killed_draft_runs_are_swept_live_ones_kept(tmp_path):
    dead, live = tmp_path / "draft-dead", tmp_path / "draft-live"
    for d in (dead, live):
        d.mkdir()
        (d / "selection.parquet").write_bytes(b"findings")
    (tmp_path / "draft-x.json").write_text("{}")  # a run summary: not a folder, kept
    with holder(live):
        assert sweep_stages(tmp_path) == 1
        assert not dead.exists() and (live / "selection.parquet").is_file()
    assert (tmp_path / "draft-x.json").is_file()


def test_manifests_come_back_in_commit_order_within_one_second(tmp_path):
    """Run ids are per second + a random suffix: two commits of one second must still read
    back in the order they were made (the ledger, evaluate's ingest runs, the write-back use it);
    manifests written before `seq` keep their run-id order, ahead of newer ones."""
    import json

    root = tmp_path / "t"
    old = root / table.MANIFESTS / "ingest-20240101T000000Z-000000.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"run_id": "ingest-20240101T000000Z-000000", "files": []}))
    for rid in ("ingest-20261130T100000Z-ffffff", "ingest-20261130T100000Z-000001"):
        table.commit(root, rid, {"rows": 0})
    got = [m["run_id"] for m in table.manifests(root)]
    assert got == ["ingest-20240101T000000Z-000000", "ingest-20261130T100000Z-ffffff",
                   "ingest-20261130T100000Z-000001"]  # fmt: skip
    assert [m.get("seq") for m in table.manifests(root)] == [None, 2, 3]
