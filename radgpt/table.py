"""Parquet tables with atomic, manifest-based commits (reports, quarantine; drafts reuse it).

Layout of a table root:
    <root>/source=<s>/split=<sp>/part-<run_id>-<n>.parquet   hive partitions, readable by any engine
    <root>/_manifests/<run_id>.json                          one per committed run: files + counts
    <root>/_staging-<run_id>/...                             a run being written (ignored by readers)
    <root>/_lock                                             held (flock) by the run writing the table

A run writes into its staging dir, moves the files into place, then writes its manifest: the
manifest is the commit. `recover(root)` (called before each run) deletes staging dirs and any file
no manifest lists, so a crashed run leaves the last good table. `read(root)` reads committed files
only; plain Spark/DuckDB/polars readers of the directory also see only committed files except
between a crash and the next run's recovery.

The reports table keeps every version of a corrected report (schemas/reports.json version,
supersedes): `read_reports` gives the current view (the latest version of each report_id) unless
asked for all versions; `latest_versions` + `current_mask` give the same view to other readers
(Ray Data in radgpt.train.data).
Writers hold the table's lock (`locked`) from before `recover` to after `commit`, so one run's
recovery never removes another live run's files. The lock is an OS lock (fcntl.flock) on `_lock`:
it goes with its holder's process, however that ends (SIGKILL included); the file names the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from radgpt.runtime import utcnow, write_json_atomic
from radgpt.schema import ContractError, arrow_schema, spec

log = logging.getLogger(__name__)
MANIFESTS = "_manifests"
LOCK = "_lock"


class TableBusy(RuntimeError):
    """Another run holds the table's lock (the message names it)."""


def holder(root: str | os.PathLike) -> dict | None:
    """Who holds (or last held) the table's lock, as written into `_lock`; None when unknown."""
    try:
        return json.loads((Path(root) / LOCK).read_text() or "null")
    except (OSError, ValueError):
        return None


def _busy(root: Path, wait_s: float) -> TableBusy:
    h = holder(root) or {}
    who = (
        f"run {h.get('run_id')} ({h.get('command')}, pid {h.get('pid')} on host {h.get('host')}, "
        f"since {h.get('started_at')})"
        if h
        else "a run that is starting"
    )
    waited = f" after waiting {wait_s:g} s" if wait_s else ""
    return TableBusy(
        f"{root} is locked by {who}{waited}: one run writes a table at a time. Let it finish, or "
        f"set ingest.lock_wait_s / draft.lock_wait_s to wait for it (lock file {root / LOCK})"
    )


@contextlib.contextmanager
def locked(root: str | os.PathLike, run_id: str, wait_s: float = 0.0, command: str = "run"):
    """Hold the table's exclusive lock `<root>/_lock` for the block; yields the holder record.

    wait_s: how long to wait for another holder (0: raise TableBusy at once). The lock is
    fcntl.flock on an open file, released when the block ends or the process dies; the file is
    never removed (a waiter may have it open) and names the holder: run id, pid, host, start time.
    On a shared volume the lock is as good as the volume's locks (NFSv4: lease-based, freed some
    seconds after a dead client's lease ends; some FUSE/SMB/object-store mounts lock per host
    only): docs/operations.md. A volume without locks fails here with the OS error (ENOLCK).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline, said = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(root, wait_s) from None
                if not said:
                    log.warning("%s is locked; waiting up to %g s: %s", root, wait_s, holder(root))
                    said = True
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        me = {"run_id": run_id, "command": command, "pid": os.getpid(),
              "host": socket.gethostname(), "started_at": utcnow().isoformat()}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # released: no holder named
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def manifests(root: str | os.PathLike) -> list[dict]:
    """The table's commits, oldest first: by `seq` (commit order, written under the table's
    lock); manifests older than `seq` keep their run-id order (ids are per second: two runs of
    one second are ordered by their random suffix, not by time)."""
    d = Path(root) / MANIFESTS
    if not d.is_dir():
        return []
    ms = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
    return [m for _, m in sorted(enumerate(ms), key=lambda x: (x[1].get("seq", x[0] + 1), x[0]))]


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
    """Remove staging dirs and uncommitted data files; returns how many paths were removed.
    Call it holding the table's lock (`locked`): it removes every run's staging and work dirs."""
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
    path = root / MANIFESTS / f"{run_id}.json"
    try:
        for i, p in enumerate(sorted(st.rglob("*.parquet"))):
            rel_dir = p.parent.relative_to(st)
            dest = root / rel_dir / f"part-{run_id}-{i:05d}.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            files.append(str(dest.relative_to(root)))
        seq = len(list((root / MANIFESTS).glob("*.json"))) + 1  # commits hold the table's lock
        manifest = {**record, "run_id": run_id, "seq": seq, "files": files}
        write_json_atomic(path, manifest)
    except BaseException:  # SIGTERM or a failed rename: no uncommitted file stays in the table
        if not path.exists():
            for f in files:
                (root / f).unlink(missing_ok=True)
        raise
    shutil.rmtree(st, ignore_errors=True)
    return manifest


def read(
    root: str | os.PathLike, name: str, columns: list[str] | None = None, filter=None
) -> pa.Table:
    """Committed rows of a table as pyarrow, in the contract `name` (schemas/<name>.json); files
    written before the contract gained a nullable column read it as nulls."""
    schema = arrow_schema(name)
    files = [str(p) for p in committed_files(root)]
    if not files:
        t = schema.empty_table()
        return t.select(columns) if columns else t
    part_names = [n for n in ("source", "split", "run_date") if n in schema.names]
    part = ds.partitioning(pa.schema([schema.field(n) for n in part_names]), flavor="hive")
    # the contract as the dataset's schema: a column the contract gained after some files were
    # written reads as nulls there (whichever file comes first), then as its "default" when the
    # contract gives one (schemas/<name>.json "since"/"default"); a non-null one must be there
    dset = ds.dataset(
        files, schema=schema, format="parquet", partitioning=part, partition_base_dir=str(root)
    )
    t = dset.to_table(filter=filter)
    t = with_defaults(t, name)
    gone = [f.name for f in schema if not f.nullable and t.column(f.name).null_count]
    if gone:
        raise ContractError(f"{name} table {root}: nulls in non-null column(s) {gone}")
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


def latest_versions(
    root: str | os.PathLike, files: list[str | os.PathLike] | None = None
) -> dict[str, str]:
    """report_id -> the source_sha256 of its latest version, for the reports of the reports table
    at root that have more than one version (corrected reports): reads the rows whose version > 1
    only, three narrow columns."""
    schema = arrow_schema("reports")
    files = [str(p) for p in (committed_files(root) if files is None else files)]
    if not files:
        return {}
    dset = ds.dataset(files, schema=schema, format="parquet")  # partitions not needed
    t = dset.to_table(
        columns=["report_id", "version", "source_sha256"], filter=ds.field("version") > 1
    )
    out: dict[str, tuple[int, str]] = {}
    for rid, v, sha in zip(*(t[c].to_pylist() for c in t.column_names), strict=True):
        if rid not in out or v > out[rid][0]:
            out[rid] = (v, sha)
    return {rid: sha for rid, (_, sha) in out.items()}


def current_mask(report_id, source_sha256, latest: dict[str, str]) -> pa.Array:
    """True where a row (report_id, source_sha256 columns) is the latest version of its report
    (`latest` from latest_versions; a report with one version is its own latest)."""
    if not latest:
        return pc.is_valid(report_id)
    ids = pa.array(list(latest), pa.string())
    want = pc.take(pa.array(list(latest.values()), pa.string()), pc.index_in(report_id, ids))
    return pc.or_kleene(pc.is_null(want), pc.equal(source_sha256, want))


def read_reports(
    cfg_or_path,
    columns: list[str] | None = None,
    filter=None,
    all_versions: bool = False,
) -> pa.Table:
    """The canonical reports table (committed rows only). Accepts a Config or a table path.

    The current view by default: one row per report_id, its latest version (a corrected report's
    earlier rows are superseded); `filter` applies to that view (a report whose latest version
    fails it is absent, its earlier versions are not returned instead). all_versions=True: every
    row, earlier versions too (audit)."""
    root = cfg_or_path.path("table") if hasattr(cfg_or_path, "path") else Path(cfg_or_path)
    if all_versions:
        return read(root, "reports", columns, filter)
    latest = latest_versions(root)
    if not latest:  # no corrected report: every row is current
        return read(root, "reports", columns, filter)
    need = [c for c in ("report_id", "source_sha256") if columns and c not in columns]
    t = read(root, "reports", columns and [*columns, *need], filter)
    t = t.filter(current_mask(t["report_id"], t["source_sha256"], latest))
    return t.select(columns) if columns else t
