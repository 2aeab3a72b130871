"""The drafts table: Parquet, atomic commit + manifest, one row per draft_id.

    from radgpt.writeback.drafts import commit_drafts, read_drafts
    commit_drafts(rows, "var/drafts", run_id)      # the manifest (rows = newly committed rows)
    read_drafts("var/drafts", ["draft_id", "flags"])

Layout (schemas/drafts.json, hive-partitioned by run_date, readable as is by
polars / pyarrow / DuckDB / Spark):
    <drafts>/run_date=YYYY-MM-DD/part-<run_id>-<n>.parquet   # one file per run and night
    <drafts>/_manifests/<run_id>.json                          # written LAST: the commit record
Commits reuse radgpt.table (the reports table's mechanism): stage under <drafts>/_staging-<run_id>
(ignored by readers), rename into the partition, then write the manifest. Rows whose draft_id is
already committed are dropped first, so a re-run of the same night writes zero new rows; files that
no manifest names (a crashed run) are removed by the next commit's recovery. A commit holds the
table's lock (`<drafts>/_lock`, radgpt.table.locked) from its recovery to its manifest: two drafting
runs that finish together commit one after the other (the second waits up to lock_wait_s), never
removing each other's staged files nor committing one draft_id twice.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radgpt import table
from radgpt.runtime import code_version, utcnow
from radgpt.schema import arrow_schema, check_arrow

log = logging.getLogger(__name__)


def to_table(rows: list[dict] | pa.Table) -> pa.Table:
    """Rows (dicts) or a table -> the drafts contract (column order, types, non-null checks)."""
    schema = arrow_schema("drafts")
    if isinstance(rows, pa.Table):
        missing = [f for f in schema if f.name not in rows.column_names]
        for f in missing:  # a column of a later schema version: its default (below)
            rows = rows.append_column(f.name, pa.nulls(len(rows), f.type))
        t = table.with_defaults(rows.select(schema.names), "drafts").cast(schema)
    else:
        t = table.with_defaults(pa.Table.from_pylist(rows, schema=schema), "drafts")
    check_arrow(t, "drafts")
    return t


def manifests(drafts: str | os.PathLike) -> list[dict]:
    return table.manifests(drafts)


def read_drafts(
    drafts: str | os.PathLike, columns: list[str] | None = None, filter=None
) -> pa.Table:
    """Committed drafts only (files named by a manifest), schema "drafts" incl. run_date."""
    return table.read(drafts, "drafts", columns, filter)


def committed_ids(drafts: str | os.PathLike) -> set[str]:
    return set(read_drafts(drafts, ["draft_id"]).column("draft_id").to_pylist())


def commit_drafts(
    rows: list[dict] | pa.Table, drafts: str | os.PathLike, run_id: str, lock_wait_s: float = 300
) -> dict:
    """Append new drafts atomically; returns the manifest (rows = newly committed rows).
    lock_wait_s: how long to wait for another run's commit (draft.lock_wait_s) before TableBusy."""
    t = to_table(rows)
    with table.locked(drafts, run_id, lock_wait_s, "draft commit"):
        try:
            return _commit(t, Path(drafts), run_id)
        finally:  # a failed or interrupted commit leaves no staged rows (report-derived text)
            shutil.rmtree(table.staging_dir(drafts, run_id), ignore_errors=True)


def _commit(t: pa.Table, drafts: Path, run_id: str) -> dict:
    table.recover(drafts)  # a crashed run's staged or unlisted files go first
    n_in = len(t)
    # drop duplicates inside the batch, then against committed drafts (idempotent re-runs)
    ids = t.column("draft_id").to_pylist()
    first = [i for i, j in enumerate(_first_index(ids)) if i == j]
    t = t.take(pa.array(first, pa.int64()))
    done = committed_ids(drafts)
    if done:
        t = t.filter(pc.invert(pc.is_in(t.column("draft_id"), pa.array(sorted(done)))))
    stage = table.staging_dir(drafts, run_id)
    for run_date in sorted(set(t.column("run_date").to_pylist())):
        part = t.filter(pc.equal(t.column("run_date"), run_date)).drop_columns(["run_date"])
        tmp = stage / f"run_date={run_date}" / "part.parquet"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, tmp, compression="zstd")
    record = {
        "rows": len(t),
        "rows_in": n_in,
        "duplicates": n_in - len(t),
        "committed_at": utcnow().isoformat(),
        "code_version": code_version(),
    }
    # rename staged files into their partitions, then write the manifest: the commit, last
    manifest = table.commit(drafts, run_id, record)
    log.info(
        "committed %d new drafts (%d duplicates skipped) run %s", len(t), n_in - len(t), run_id
    )
    return manifest


def _first_index(ids: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    return [seen.setdefault(d, i) for i, d in enumerate(ids)]
