"""Parquet tables with atomic, manifest-based commits (reports, quarantine; drafts reuse it).

Layout of a table root:
    <root>/source=<s>/split=<sp>/part-<run_id>-<n>.parquet   hive partitions, readable by any engine
    <root>/_manifests/<run_id>.json                          one per committed run: files + counts
    <root>/_staging-<run_id>/...                             a run being written (ignored by readers)

A run writes into its staging dir, moves the files into place, then writes its manifest: the
manifest is the commit. `recover(root)` (called before each run) deletes staging dirs and any file
no manifest lists, so a crashed run leaves the last good table. `read(root)` reads committed files
only; plain Spark/DuckDB/polars readers of the directory also see only committed files except
between a crash and the next run's recovery.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from radgpt.runtime import write_json_atomic
from radgpt.schema import arrow_schema, spec

log = logging.getLogger(__name__)
MANIFESTS = "_manifests"


def manifests(root: str | os.PathLike) -> list[dict]:
    d = Path(root) / MANIFESTS
    if not d.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]


def committed_files(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    return [root / f for m in manifests(root) for f in m.get("files", [])]


def staging_dir(root: str | os.PathLike, run_id: str) -> Path:
    return Path(root) / f"_staging-{run_id}"


def staged_rows(root: str | os.PathLike, run_id: str) -> int:
    """Rows in the Parquet files staged by run_id (from the files' footers)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in staging_dir(root, run_id).rglob("*.parquet"))


def recover(root: str | os.PathLike) -> int:
    """Remove staging dirs and uncommitted data files; returns how many paths were removed."""
    root = Path(root)
    if not root.is_dir():
        return 0
    removed = 0
    for st in root.glob("_staging-*"):
        shutil.rmtree(st, ignore_errors=True)
        removed += 1
    for work in [*root.glob("_work-*"), *root.glob("_units-*")]:  # a crashed ingest's work files
        shutil.rmtree(work, ignore_errors=True)
        removed += 1
    keep = {p.resolve() for p in committed_files(root)}
    for p in root.rglob("*.parquet"):
        if p.parent.name.startswith("_") or any(
            x.startswith("_") for x in p.relative_to(root).parts
        ):
            continue
        if p.resolve() not in keep:
            p.unlink()
            removed += 1
    if removed:
        log.warning("recovered %s: removed %d uncommitted paths", root, removed)
    return removed


def commit(root: str | os.PathLike, run_id: str, record: dict) -> dict:
    """Move the staged Parquet files of run_id into place, then write the manifest (the commit)."""
    root = Path(root)
    st = staging_dir(root, run_id)
    files = []
    for i, p in enumerate(sorted(st.rglob("*.parquet"))):
        rel_dir = p.parent.relative_to(st)
        dest = root / rel_dir / f"part-{run_id}-{i:05d}.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dest)
        files.append(str(dest.relative_to(root)))
    manifest = {**record, "run_id": run_id, "files": files}
    write_json_atomic(root / MANIFESTS / f"{run_id}.json", manifest)
    shutil.rmtree(st, ignore_errors=True)
    return manifest


def read(
    root: str | os.PathLike, name: str, columns: list[str] | None = None, filter=None
) -> pa.Table:
    """Committed rows of a table as pyarrow, cast to the contract `name` (schemas/<name>.json)."""
    schema = arrow_schema(name)
    files = [str(p) for p in committed_files(root)]
    if not files:
        t = schema.empty_table()
        return t.select(columns) if columns else t
    part_names = [n for n in ("source", "split", "run_date") if n in schema.names]
    part = ds.partitioning(pa.schema([schema.field(n) for n in part_names]), flavor="hive")
    # the contract's schema, not the first file's: columns added by a later schema version read as
    # their default in files written before it (schemas/<name>.json "since"/"default")
    dset = ds.dataset(
        files, schema=schema, format="parquet", partitioning=part, partition_base_dir=str(root)
    )
    t = dset.to_table(filter=filter)
    t = with_defaults(t.select(schema.names), name).cast(schema)
    return t.select(columns) if columns else t


def with_defaults(t: pa.Table, name: str) -> pa.Table:
    """Nulls of fields with a "default" in the contract (older files and rows lack them) filled."""
    import pyarrow.compute as pc

    for f in spec(name)["fields"]:
        if "default" in f and t.column(f["name"]).null_count:
            i = t.schema.get_field_index(f["name"])
            typ = t.schema.field(i).type
            t = t.set_column(
                i, t.schema.field(i), pc.fill_null(t.column(i), pa.scalar(f["default"], typ))
            )
    return t


def read_reports(cfg_or_path, columns: list[str] | None = None, filter=None) -> pa.Table:
    """The canonical reports table (committed rows only). Accepts a Config or a table path."""
    root = cfg_or_path.path("table") if hasattr(cfg_or_path, "path") else Path(cfg_or_path)
    return read(root, "reports", columns, filter)
