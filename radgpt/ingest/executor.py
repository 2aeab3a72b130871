"""Executor side of the ingest job (radgpt.ingest.run drives it): report text never enters the JVM.

1. parse_fn (spark.range(parts).mapInArrow): task i reads its own work units from the unit file
   (at its offset: radgpt.ingest.plan), parses them, writes its report rows to <work>/parsed-<i>.arrow (Arrow IPC, uncompressed, a
   temporary file) and yields to Spark only narrow key rows (ids, hashes, rule outcome, where the
   row is: _part, _idx, and its input: _input), quarantine rows and, per input, the records it
   saw (radgpt.ingest.counts.Tally). Spark runs the cohort rules on the keys.
2. write_fn (mapInArrow over every report's key + state, repartitioned by _part): counts its
   rows by state and rule outcome, and by input, reads the rows to write (new reports and new
   versions of ingested ones) from the IPC files, adds split, split_origin, version, supersedes
   and the run fields, checks the contract and writes the hive-partitioned Parquet
   files (source=/split=) into the staging dir. It yields the counts and one row per written file;
   so the cohort rules run once, in the same Spark job (no cached keys, no count job). The driver
   reconciles the counts and checks the staged files' row counts (Parquet footers) against them.

Both steps are deterministic and write by temp file + rename, so a retried or speculative task
rewrites the same files. Arrow, not Spark, encodes the Parquet, so text crosses no process line.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections import deque
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radgpt.config import IngestCfg
from radgpt.ingest.counts import Tally
from radgpt.ingest.plan import my_units
from radgpt.ingest.sources.base import Unit
from radgpt.schema import arrow_schema, check_arrow

BATCH_ROWS = 2048  # parsed rows per Arrow batch (~2 MB of text)
# filled after the cohort rules
LATER = ("split", "split_origin", "version", "supersedes", "ingest_run_id", "ingested_at")
WRITE = ("new", "corrected")  # the states whose rows are written (a first version, a new version)
PARTITIONS = ("source", "split")  # hive partition columns: in the path, not in the files

# the key of a parsed report: ids, hashes, rule outcome and where the row is (the cohort rules' input)
REPORT_KEYS = [("report_id", pa.string()), ("source", pa.string()), ("source_uri", pa.string()),
               ("source_member", pa.string()), ("source_sha256", pa.string()),
               ("pair_sha256", pa.string()), ("content_sha256", pa.string()),
               ("status", pa.string()), ("official_split", pa.string()),
               ("eligible", pa.bool_()), ("exclusion_reason", pa.string()),
               ("_part", pa.int32()), ("_idx", pa.int64()),
               ("_input", pa.int32())]  # fmt: skip
# what Spark sees of a parse: keys of report rows (kind = report), quarantine rows (kind = bad)
# and the records each task saw per input (kind = seen: seen, unread; radgpt.ingest.counts)
KEYS = [*REPORT_KEYS, ("kind", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
        ("size_bytes", pa.int64()), ("seen", pa.int64()), ("unread", pa.int64())]  # fmt: skip
KEY_SCHEMA = pa.schema(KEYS)
# what write_fn gets for every parsed report (radgpt.ingest.cohort's keys): where the row is, its state
# (new | corrected | seen | dup_id), split, version and rule outcome, whether its source status
# announces a correction (_amended), and input; and what it yields: one row per written file
# (what = file), one per group of COUNTED (what = count) and of BY_INPUT (what = input): the run's
# counts, in total and per input (radgpt.ingest.counts)
STATE = pa.schema([("_part", pa.int32()), ("_idx", pa.int64()), ("_state", pa.string()),
                   ("source", pa.string()), ("split", pa.string()), ("split_origin", pa.string()),
                   ("version", pa.int32()), ("supersedes", pa.string()),
                   ("eligible", pa.bool_()), ("exclusion_reason", pa.string()),
                   ("_amended", pa.bool_()), ("_input", pa.int32())])  # fmt: skip
COUNTED = ["_state", "source", "split", "split_origin", "eligible", "exclusion_reason", "_amended"]
BY_INPUT = ["_input", "_state", "eligible"]
WRITTEN = pa.schema([("what", pa.string()), ("path", pa.string()), ("rows", pa.int64()),
                     *((n, STATE.field(n).type) for n in COUNTED),
                     ("_input", pa.int32())])  # fmt: skip


def parsed_schema() -> pa.Schema:
    """The IPC files' schema: the contract's fields but LATER ones, all nullable, + the split
    the source carried (official_split, for the cohort rules) and the row's input (_input)."""
    base = arrow_schema("reports")
    fields = [base.field(n).with_nullable(True) for n in base.names if n not in LATER]
    return pa.schema([*fields, ("official_split", pa.string()), ("_input", pa.int32())])


def parsed_path(work: str, part: int) -> str:
    return os.path.join(work, f"parsed-{part:05d}.arrow")


def parse_fn(cfg: IngestCfg, units_file: str, index: list, work: str):
    """The step-1 mapInArrow function over spark.range(parts) (see the module docstring); task i
    reads its own units only (radgpt.ingest.plan: `index` = write_units' (offset, bytes, units))."""

    def mine(i: int):  # (input, unit) of task i
        return my_units(units_file, index, i)

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
                bad, n, tally = [], 0, Tally()
                with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as w:
                    for rows in _chunks(_parse(mine(i), cfg, tally), bad):
                        t = pa.Table.from_pylist(rows, schema=schema)
                        w.write_table(t)
                        yield keys(t, i, n)
                        n += t.num_rows
                os.replace(tmp, path)  # atomic: a retried task's file replaces the whole
                if bad:
                    yield _rows(bad, "bad")
                seen = tally.rows()  # the records of each input, after the task's last unit
                if seen:
                    yield _rows(seen, "seen")

    return fn


def _parse(units, cfg: IngestCfg, tally: Tally):
    """parse_units' items of (input, unit) pairs, each row tagged with its input (`_input`);
    `tally` counts the records of each unit (radgpt.ingest.counts)."""
    from radgpt.ingest.rows import parse_units

    inputs = deque()  # the input of the unit being parsed (parse_units takes one unit at a time)

    def only_units():
        for inp, unit in units:
            inputs.append(inp)
            yield unit

    def done(unit: Unit, items: int, ended: bool) -> None:
        tally.add(inputs.popleft(), unit, items, ended)

    for kind, row in parse_units(only_units(), cfg, done):
        row["_input"] = inputs[0]
        yield kind, row


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
    arrays = [_array(cols[name], t) if name in cols else pa.nulls(n, t) for name, t in KEYS]
    return pa.RecordBatch.from_arrays(arrays, schema=KEY_SCHEMA)


def _rows(rows: list[dict], kind: str) -> pa.RecordBatch:
    """A KEY_SCHEMA batch of row dicts (all with the same keys) of one kind."""
    cols = {k: pa.array([r[k] for r in rows], t) for k, t in KEYS if k in rows[0]}
    return _batch({**cols, "kind": pa.array([kind] * len(rows))}, len(rows))


def _array(a, t: pa.DataType) -> pa.Array:
    """An Array or ChunkedArray as one Array of type t."""
    a = a.cast(t)
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def write_fn(work: str, staging: str, run_id: str, now: dt.datetime):
    """The step-2 mapInArrow function over STATE rows, repartitioned by _part."""
    schema = arrow_schema("reports")
    names = [n for n in schema.names if n not in PARTITIONS]
    at = pa.scalar(now.astimezone(dt.UTC), schema.field("ingested_at").type)

    def fn(batches):
        got = list(batches)  # this task's keys: ~60 bytes a row
        if not got:
            return
        keys = pa.Table.from_batches(got).cast(STATE)
        for what, by in (("count", COUNTED), ("input", BY_INPUT)):
            counts = keys.group_by(by).aggregate([("_idx", "count")])
            n = counts.num_rows
            cols = {"what": pa.repeat(pa.scalar(what), n), "rows": counts["_idx_count"],
                    **{c: counts[c] for c in by}}  # fmt: skip
            yield pa.RecordBatch.from_arrays(
                [_array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type)
                 for f in WRITTEN], schema=WRITTEN,
            )  # fmt: skip
        dec = keys.filter(pc.is_in(keys["_state"], pa.array(WRITE)))
        for part in sorted(set(dec.column("_part").to_pylist())):
            d = dec.filter(pc.equal(dec.column("_part"), part)).sort_by("_idx")
            with pa.memory_map(parsed_path(work, part)) as src:
                t = pa.ipc.open_file(src).read_all().take(d.column("_idx"))
            n = t.num_rows
            for c in ("split", "split_origin", "version", "supersedes"):
                t = t.append_column(c, d.column(c))
            t = t.append_column("ingest_run_id", pa.repeat(pa.scalar(run_id), n))
            t = t.append_column("ingested_at", pa.repeat(at, n)).select(schema.names)
            check_arrow(t, "reports")  # fail loudly: nulls in non-null fields, missing columns
            t = t.cast(schema)
            groups = t.select(PARTITIONS).group_by(list(PARTITIONS)).aggregate([]).to_pylist()
            for g in sorted(groups, key=lambda g: (g["source"], g["split"])):
                source, split = g["source"], g["split"]
                m = pc.and_(pc.equal(t["source"], source), pc.equal(t["split"], split))
                out = t.filter(m).select(names)
                folder = Path(staging) / f"source={source}" / f"split={split}"
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

    return fn
