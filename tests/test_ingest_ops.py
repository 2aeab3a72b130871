"""Ingest on a real local SparkSession: nothing quarantined twice (re-runs, a crash between the
quarantine's and the reports' commits, a version-1 quarantine), nothing left behind by a failure.

    .venv/bin/pytest tests/test_ingest_ops.py -q
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from radgpt import table
from radgpt.config import load_config
from radgpt.ingest.run import quarantine_root, run_ingest


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A small sample with the deliberately bad inputs of every format."""
    from radgpt.sample.write import write_sample

    out = tmp_path_factory.mktemp("sample")
    write_sample(out, n=8, seed=5, bad=True)
    return out


def cfg_for(tmp_path, src):
    return load_config(None, {"paths.root": str(tmp_path), "ingest.inputs": [str(src)]}, env={})


def quarantine(cfg):
    return table.read(quarantine_root(cfg), "quarantine")


def full(cfg):
    """cfg with ingest.skip_unchanged off (`radgpt ingest --full`): every input read again."""
    return cfg.model_copy(
        update={"ingest": cfg.ingest.model_copy(update={"skip_unchanged": False})}
    )


def leftovers(cfg) -> list:
    return [p for r in (cfg.path("table"), quarantine_root(cfg)) for p in r.glob("_[sw]*-*")]


def test_a_rerun_quarantines_nothing_twice(spark, sample, tmp_path):
    cfg = cfg_for(tmp_path, sample)
    m1 = run_ingest(cfg, spark=spark)
    q1 = quarantine(cfg)
    n = m1["counts"]["totals"]["quarantined"]
    assert n == q1.num_rows > 0 and m1["counts"]["totals"]["already_quarantined"] == 0
    ids = q1.column("quarantine_id").to_pylist()
    assert None not in ids and len(set(ids)) == n and all(len(i) == 32 for i in ids)
    m2 = run_ingest(full(cfg), spark=spark)  # read again (unchanged inputs are skipped unread)
    tot = m2["counts"]["totals"]
    assert (tot["quarantined"], tot["already_quarantined"], tot["new"]) == (n, n, 0)
    assert sorted(quarantine(cfg).column("quarantine_id").to_pylist()) == sorted(ids)
    assert table.manifests(quarantine_root(cfg))[-1]["already_quarantined"] == n
    assert not leftovers(cfg)


def test_a_crash_between_the_two_commits_duplicates_nothing(spark, sample, tmp_path, monkeypatch):
    """The quarantine commits first; the reports' commit dies; the re-run commits the reports and
    skips the quarantine rows already there."""
    cfg = cfg_for(tmp_path, sample)
    real = table.commit

    def crash(root, run_id, record):
        if record.get("kind") == "ingest":
            raise OSError("disk went away")
        return real(root, run_id, record)

    monkeypatch.setattr(table, "commit", crash)
    with pytest.raises(OSError):
        run_ingest(cfg, spark=spark)
    n = quarantine(cfg).num_rows
    assert n > 0 and table.read_reports(cfg).num_rows == 0
    assert not leftovers(cfg)  # the failed run's staged reports and work files are gone
    monkeypatch.setattr(table, "commit", real)
    m = run_ingest(cfg, spark=spark)
    assert table.read_reports(cfg).num_rows == m["counts"]["totals"]["new"] > 0
    assert quarantine(cfg).num_rows == n == m["counts"]["totals"]["already_quarantined"]


def test_a_version_1_quarantine_reads_and_is_not_repeated(spark, sample, tmp_path):
    cfg = cfg_for(tmp_path, sample)
    run_ingest(cfg, spark=spark)
    qroot = quarantine_root(cfg)
    for f in table.committed_files(qroot):  # as version 1 wrote them: no quarantine_id
        pq.write_table(pq.read_table(f).drop_columns(["quarantine_id"]), f)
    old = quarantine(cfg)
    assert old.num_rows > 0 and old.column("quarantine_id").null_count == old.num_rows
    m = run_ingest(full(cfg), spark=spark)  # their ids are computed from their columns: all known
    assert m["counts"]["totals"]["already_quarantined"] == old.num_rows
    assert quarantine(cfg).num_rows == old.num_rows
