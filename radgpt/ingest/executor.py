"""Executor side of the ingest job (radgpt.ingest.run drives it): report text never enters the JVM.

1. parse_fn (spark.range(parts).mapInArrow): task i reads its work units from the unit file,
   parses them, writes its report rows to <work>/parsed-<i>.arrow (Arrow IPC, uncompressed, a
   temporary file) and yields to Spark only narrow key rows (ids, hashes, rule outcome, where the
   row is: _part, _idx) and quarantine rows. Spark runs the cohort rules on the keys.
2. write_fn (mapInArrow over every report's key + state, repartitioned by _part): counts its
   rows by state and rule outcome, reads the new rows from the IPC files, adds split,
   split_origin and the run fields, checks the contract and writes the hive-partitioned Parquet
   files (source=/split=) into the staging dir (revised rows, later versions of committed
   reports, into the revisions table's). It yields the counts and one row per written file;
   so the cohort rules run once, in the same Spark job (no cached keys, no count job). The driver
   reconciles the counts and checks the staged files' row counts (Parquet footers) against them.

Both steps are deterministic and write by temp file + rename, so a retried or speculative task
rewrites the same files. Arrow, not Spark, encodes the Parquet, so text crosses no process line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radgpt.config import IngestCfg
from radgpt.ingest.sources.base import Unit
from radgpt.schema import arrow_schema, check_arrow

BATCH_ROWS = 2048  # parsed rows per Arrow batch (~2 MB of text)
LATER = ("split", "split_origin", "ingest_run_id", "ingested_at")  # filled after the cohort rules
PARTITIONS = ("source", "split")  # hive partition columns: in the path, not in the files

# the key of a parsed report: ids, hashes, rule outcome and where the row is (the cohort rules' input)
REPORT_KEYS = [("report_id", pa.string()), ("source", pa.string()), ("source_uri", pa.string()),
               ("source_member", pa.string()), ("source_sha256", pa.string()),
               ("pair_sha256", pa.string()), ("official_split", pa.string()),
               ("eligible", pa.bool_()), ("exclusion_reason", pa.string()),
               ("_part", pa.int32()), ("_idx", pa.int64())]  # fmt: skip
# what Spark sees of a parse: keys of report rows (kind = report) and quarantine rows (kind = bad)
KEYS = [*REPORT_KEYS, ("kind", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
        ("size_bytes", pa.int64())]  # fmt: skip
KEY_SCHEMA = pa.schema(KEYS)
# what write_fn gets for every parsed report (radgpt.ingest.cohort's keys): where the row is, its state
# (new | seen | dup_id), split and rule outcome; and what it yields: one row per written file
# (what = file) and one per group of COUNTED (what = count): the run's counts
STATE = pa.schema([("_part", pa.int32()), ("_idx", pa.int64()), ("_state", pa.string()),
                   ("source", pa.string()), ("split", pa.string()), ("split_origin", pa.string()),
                   ("eligible", pa.bool_()), ("exclusion_reason", pa.string())])  # fmt: skip
COUNTED = ["_state", "source", "split", "split_origin", "eligible", "exclusion_reason"]
WRITTEN = pa.schema([("what", pa.string()), ("path", pa.string()), ("rows", pa.int64()),
                     *((n, STATE.field(n).type) for n in COUNTED)])  # fmt: skip


def parsed_schema() -> pa.Schema:
    """The IPC files' schema: the contract's fields but LATER ones, all nullable, + the split
    the source carried (official_split, for the cohort rules)."""
    base = arrow_schema("reports")
    fields = [base.field(n).with_nullable(True) for n in base.names if n not in LATER]
    return pa.schema([*fields, pa.field("official_split", pa.string())])


def parsed_path(work: str, part: int) -> str:
    return os.path.join(work, f"parsed-{part:05d}.arrow")


def parse_fn(cfg: IngestCfg, units_file: str, n_units: int, work: str):
    """The step-1 mapInArrow function over spark.range(parts) (see the module docstring)."""
    from radgpt.ingest.rows import parse_units

    def mine(i: int):
        n = 0
        with open(units_file) as f:
            for line in f:
                n += 1
                part, js = line.split("\t", 1)
                if int(part) == i:
                    yield Unit(**json.loads(js))
        if n != n_units:  # the file every task reads must be the one the driver wrote
            raise RuntimeError(f"{units_file}: {n} work units, the driver wrote {n_units}")

    def keys(t: pa.Table, part: int, first: int) -> pa.RecordBatch:
        n = t.num_rows
        cols = {name: t.column(name) for name, _ in REPORT_KEYS if name in t.column_names}
        cols["_part"] = pa.array([part] * n, pa.int32())
        cols["_idx"] = pa.array(range(first, first + n), pa.int64())
        cols["kind"] = pa.array(["report"] * n)
        return _batch(cols, n)

    def fn(batches):
        schema = parsed_schema()
        for batch in batches:
            for i in batch.column(0).to_pylist():
                path = parsed_path(work, i)
                tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
                bad, n = [], 0
                with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as w:
                    for rows in _chunks(parse_units(mine(i), cfg), bad):
                        t = pa.Table.from_pylist(rows, schema=schema)
                        w.write_table(t)
                        yield keys(t, i, n)
                        n += t.num_rows
                os.replace(tmp, path)  # atomic: a retried task's file replaces the whole
                if bad:
                    cols = {k: pa.array([b[k] for b in bad], typ) for k, typ in KEYS if k in bad[0]}
                    cols["kind"] = pa.array(["bad"] * len(bad))
                    yield _batch(cols, len(bad))

    return fn


def _chunks(items, bad: list):
    """Report rows of parse_units' (kind, row) items in lists of BATCH_ROWS (sections as
    key/value lists, Arrow's map input); bad rows go to `bad`."""
    rows = []
    for kind, row in items:
        if kind == "bad":
            bad.append(row)
            continue
        if row["sections"] is not None:
            row["sections"] = list(row["sections"].items())
        rows.append(row)
        if len(rows) == BATCH_ROWS:
            yield rows
            rows = []
    if rows:
        yield rows


def _batch(cols: dict, n: int) -> pa.RecordBatch:
    """A KEY_SCHEMA batch from the columns given (the others null)."""
    arrays = [
        cols[name].cast(t) if name in cols else pa.nulls(n, t) for name, t in KEYS
    ]  # ChunkedArray or Array: combine to one Array per column
    arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return pa.RecordBatch.from_arrays(arrays, schema=KEY_SCHEMA)


def write_fn(work: str, staging: str, run_id: str, now: dt.datetime, revisions: str | None = None):
    """The step-2 mapInArrow function over STATE rows, repartitioned by _part: new rows go to
    `staging` (the reports table's), revised ones (later versions of committed reports) to
    `revisions` (the revisions table's staging dir; radgpt.ingest.versions)."""
    schema = arrow_schema("reports")
    names = [n for n in schema.names if n not in PARTITIONS]
    at = pa.scalar(now.astimezone(dt.UTC), schema.field("ingested_at").type)

    def write(dec: pa.Table, dest: str):
        for part in sorted(set(dec.column("_part").to_pylist())):
            d = dec.filter(pc.equal(dec.column("_part"), part)).sort_by("_idx")
            with pa.memory_map(parsed_path(work, part)) as src:
                t = pa.ipc.open_file(src).read_all().take(d.column("_idx"))
            n = t.num_rows
            t = t.append_column("split", d.column("split")).append_column(
                "split_origin", d.column("split_origin")
            )
            t = t.append_column("ingest_run_id", pa.repeat(pa.scalar(run_id), n))
            t = t.append_column("ingested_at", pa.repeat(at, n)).select(schema.names)
            check_arrow(t, "reports")  # fail loudly: nulls in non-null fields, missing columns
            t = t.cast(schema)
            groups = t.select(PARTITIONS).group_by(list(PARTITIONS)).aggregate([]).to_pylist()
            for g in sorted(groups, key=lambda g: (g["source"], g["split"])):
                source, split = g["source"], g["split"]
                m = pc.and_(pc.equal(t["source"], source), pc.equal(t["split"], split))
                out = t.filter(m).select(names)
                folder = Path(dest) / f"source={source}" / f"split={split}"
                folder.mkdir(parents=True, exist_ok=True)
                path = str(folder / f"part-{part:05d}.parquet")
                tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
                pq.write_table(out, tmp)
                os.replace(tmp, path)  # atomic: a retried task's file replaces the whole
                yield pa.RecordBatch.from_pylist(
                    [{"what": "file", "path": path, "rows": out.num_rows, "source": source,
                      "split": split}],
                    schema=WRITTEN,
                )  # fmt: skip

    def fn(batches):
        got = list(batches)  # this task's keys: ~60 bytes a row
        if not got:
            return
        keys = pa.Table.from_batches(got).cast(STATE)
        counts = keys.group_by(COUNTED).aggregate([("_idx", "count")])
        n = counts.num_rows
        yield pa.RecordBatch.from_arrays(
            [pa.repeat(pa.scalar("count"), n), pa.nulls(n, pa.string()),
             counts["_idx_count"].combine_chunks(), *(counts[c].combine_chunks() for c in COUNTED)],
            schema=WRITTEN,
        )  # fmt: skip
        yield from write(keys.filter(pc.equal(keys["_state"], "new")), staging)
        rev = keys.filter(pc.equal(keys["_state"], "revised"))
        if rev.num_rows:
            if revisions is None:
                raise RuntimeError("revised report rows but no revisions staging dir")
            yield from write(rev, revisions)

    return fn
