"""Spark ingest: report exports (MIMIC-CXR, OpenI, CSV, FHIR, HL7) -> the canonical Parquet table.

    radgpt ingest --config conf/local.yaml var/sample
    spark-submit jobs/ingest_reports.py --conf-file conf/cluster.yaml /data/exports/2026-11-23

The driver lists work units (names, sizes, row ranges: never report text) into a JSON-lines file,
each tagged with a partition; task i of spark.range(partitions).mapInArrow reads its own units and
parses them. New reports get the cohort rules and splits (radgpt.cohort, on a narrow cached key
table), then the table and the quarantine (<table>/_quarantine) are committed atomically
(radgpt.table). Counts reconcile or the run fails:
    parsed = new (eligible + excluded per reason) + already ingested + duplicate ids,
    quarantined = unreadable units/rows/messages (+ duplicate ids + unknown files).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from radgpt import table
from radgpt.config import Config, ConfigError
from radgpt.runtime import code_version, new_run_id, sha256_file, utcnow, write_json_atomic
from radgpt.schema import spark_schema
from radgpt.sources import FORMATS, detect, reader
from radgpt.sources.base import Unit

log = logging.getLogger(__name__)

# per-row fields of the parse output that are not in the reports contract
PARSE_EXTRA = [("official_split", "string"), ("kind", "string"), ("reason", "string"),
               ("detail", "string"), ("size_bytes", "int64")]  # fmt: skip
BATCH_ROWS = 2048  # rows per Arrow batch to the JVM (~4 MB): fewer, larger batches cost it less
UNIT_BYTES = 4096  # nominal size of a unit whose size is unknown (balancing only)
LATER = {"split", "split_origin", "ingest_run_id", "ingested_at"}  # filled by radgpt.cohort


def quarantine_root(cfg: Config) -> Path:
    return cfg.path("table") / "_quarantine"


def parse_schema():
    """Spark schema of the parse step: report fields (all nullable) + quarantine fields + kind."""
    from pyspark.sql import types as T

    base = [
        T.StructField(f.name, f.dataType, True)
        for f in spark_schema("reports").fields
        if f.name not in LATER
    ]
    types = {"string": T.StringType(), "int64": T.LongType()}
    return T.StructType(base + [T.StructField(n, types[t], True) for n, t in PARSE_EXTRA])


def resolve_inputs(
    cfg: Config, inputs: list[str], fmt: str
) -> tuple[list[tuple[str, Path]], list[dict]]:
    """[(format, path)] for every input. With format auto, a MIMIC-CXR tree is one input and any
    other directory is expanded (up to 3 levels) into its files and subdirectories.

    Returns also quarantine rows for files whose format cannot be detected (never dropped).
    """
    from radgpt.sources import mimic

    out, unknown = [], []

    def walk(p: Path, depth: int) -> None:
        if p.is_dir() and (mimic.detect(p) or depth == 0):
            try:
                out.append((detect(p), p))
            except ValueError:
                unknown.append(p)
            return
        if p.is_file():
            try:
                out.append((detect(p), p))
            except ValueError:
                unknown.append(p)
            return
        for child in sorted(p.iterdir()):
            if not any(fnmatch.fnmatch(child.name, pat) for pat in cfg.ingest.ignore):
                walk(child.resolve(), depth - 1)

    for raw in inputs:
        p = Path(raw.format(root=cfg.paths.root)).expanduser().resolve()
        if not p.exists():
            raise FileNotFoundError(f"ingest input does not exist: {p}")
        if fmt != "auto":
            out.append((fmt, p))
        else:
            walk(p, 3)
    bad = [
        {"source": "unknown", "source_uri": str(u), "source_member": None, "source_sha256": None,
         "reason": "unknown_format", "detail": "no reader recognises this input; pass --format",
         "size_bytes": u.stat().st_size if u.is_file() else None}
        for u in unknown
    ]  # fmt: skip
    return out, bad


def input_hash(p: Path) -> str:
    """sha256 of a file; for a directory, of its sorted listing (relative path, size, mtime)."""
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()

    def walk(d: str, rel: str) -> None:  # os.walk's order: a folder's files, then its subfolders
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if not e.is_dir():
                st = e.stat()
                h.update(f"{rel}{e.name}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
        for e in entries:
            if e.is_dir() and not e.is_symlink():  # like os.walk: symlinked folders not entered
                walk(e.path, f"{rel}{e.name}/")

    walk(str(p), "")
    return h.hexdigest()


def write_units(cfg: Config, pairs: list[tuple[str, Path]], path: Path, parts: int) -> int:
    """Stream every input's work units into a JSON-lines file (driver memory stays flat).

    Each line is "<partition>\t<unit json>": units go to the partition with the fewest bytes so
    far (a unit of unknown size, e.g. a MIMIC-CXR patient folder, counts as UNIT_BYTES).
    """
    load = [0] * parts  # bytes assigned per partition
    n = 0
    with open(path, "w") as f:
        for fmt, p in pairs:
            for unit in reader(fmt).units(p, cfg.ingest):
                i = min(range(parts), key=load.__getitem__)
                load[i] += unit.size or UNIT_BYTES
                f.write(f"{i}\t{json.dumps(asdict(unit))}\n")
                n += 1
    return n


def parse_fn(cfg: Config, units_file: str, n_units: int):
    """The mapInArrow function over spark.range(parts): partition i reads its units from the unit
    file (no shuffle of the unit list) and yields batches of parsed rows (inside tasks)."""
    import pyarrow as pa

    from radgpt.records import parse_units
    from radgpt.schema import arrow_schema

    ingest_cfg = cfg.ingest

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

    def fn(batches):
        base = arrow_schema("reports")
        fields = [base.field(n).with_nullable(True) for n in base.names if n not in LATER]
        types = {"string": pa.string(), "int64": pa.int64()}
        schema = pa.schema(fields + [pa.field(n, types[t]) for n, t in PARSE_EXTRA])
        for batch in batches:
            for i in batch.column(0).to_pylist():
                rows = []
                for kind, row in parse_units(mine(i), ingest_cfg):
                    row["kind"] = kind
                    if "sections" in row and row["sections"] is not None:
                        row["sections"] = list(row["sections"].items())
                    rows.append(row)
                    if len(rows) >= BATCH_ROWS:
                        yield pa.RecordBatch.from_pylist(rows, schema=schema)
                        rows = []
                if rows:
                    yield pa.RecordBatch.from_pylist(rows, schema=schema)

    return fn


def quarantine_df(bad, dup_ids, unknown_rows, spark, run_id, now):
    from pyspark.sql import functions as F

    q = spark_schema("quarantine")
    cols = [f.name for f in q.fields if f.name not in ("ingest_run_id", "ingested_at")]
    dups = dup_ids.select(
        "source", "source_uri", "source_member", "source_sha256",
        F.lit("duplicate_report_id").alias("reason"),
        F.concat(F.lit("report_id seen earlier in this run: "), F.col("report_id")).alias("detail"),
        F.lit(None).cast("long").alias("size_bytes"),
    )  # fmt: skip
    df = bad.select(cols).unionByName(dups)
    if unknown_rows:
        df = df.unionByName(spark.createDataFrame(unknown_rows, df.schema))
    df = df.withColumn("ingest_run_id", F.lit(run_id)).withColumn(
        "ingested_at", F.lit(now.replace(tzinfo=None)).cast("timestamp")
    )
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in q.fields])


def run_ingest(cfg: Config, inputs=None, fmt=None, split_file=None, spark=None) -> dict:
    """Ingest `inputs` (default cfg.ingest.inputs) incrementally; returns the run manifest."""
    from pyspark import StorageLevel

    from radgpt.cohort import transform
    from radgpt.runtime import spark_session

    if split_file:
        cfg = cfg.model_copy(
            update={"ingest": cfg.ingest.model_copy(update={"split_file": split_file})}
        )
    inputs = list(inputs or cfg.ingest.inputs)
    if not inputs:
        raise ConfigError("ingest.inputs: no inputs given (pass INPUT paths or set ingest.inputs)")
    fmt = fmt or cfg.ingest.format
    spark = spark or spark_session(cfg)
    root, qroot = cfg.path("table"), quarantine_root(cfg)
    for r in (root, qroot):
        table.recover(r)
    run_id, now = new_run_id("ingest"), utcnow()
    pairs, unknown_rows = resolve_inputs(cfg, inputs, fmt)
    # input hashes (a stat of every file of a folder) in a driver thread, while Spark works
    hasher = ThreadPoolExecutor(1, thread_name_prefix="input-hash")
    hashes = hasher.map(input_hash, [p for _, p in pairs])
    hasher.shutdown(wait=False)
    log.info("run %s: %d inputs (%s)", run_id, len(pairs), ", ".join(sorted({f for f, _ in pairs})))

    # the unit list lives beside the table (shared storage on a cluster: executors read it)
    # (Spark skips files whose own name starts with '_' or '.', so only the folder is hidden)
    units_file = root / f"_units-{run_id}" / "units.jsonl"
    units_file.parent.mkdir(parents=True, exist_ok=True)
    marks = [time.perf_counter()]

    def lap() -> float:  # seconds since the previous lap
        marks.append(time.perf_counter())
        return marks[-1] - marks[-2]

    try:
        parts = cfg.spark.partitions or 2 * spark.sparkContext.defaultParallelism
        n_units = write_units(cfg, pairs, units_file, parts)
        log.info("%d work units over %d partitions (%.1fs)", n_units, parts, lap())
        timings = {"list_units_s": marks[-1] - marks[-2]}
        parsed = (
            spark.range(parts, numPartitions=parts)
            .mapInArrow(parse_fn(cfg, str(units_file), n_units), parse_schema())
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        kinds = {r["kind"]: r["count"] for r in parsed.groupBy("kind").count().collect()}
        timings["parse_s"] = lap()
        log.info(
            "parsed: %d reports, %d quarantined (%.1fs)",
            kinds.get("report", 0),
            kinds.get("bad", 0),
            timings["parse_s"],
        )

        files = [str(p) for p in table.committed_files(root)]
        existing = spark.read.option("basePath", str(root)).parquet(*files) if files else None
        reports = parsed.filter("kind = 'report'").drop(
            *[n for n, _ in PARSE_EXTRA if n != "official_split"]
        )
        out = transform(reports, existing, cfg.ingest, run_id, now)
        keys = out["keys"].persist(StorageLevel.MEMORY_AND_DISK)  # narrow: no report text
        quarantine = quarantine_df(
            parsed.filter("kind = 'bad'"), out["dup_ids"], unknown_rows, spark, run_id, now
        )
        counts = _count(keys, quarantine)
        _reconcile(kinds, counts)
        timings["cohort_s"] = lap()
        log.info("cohort rules and counts (%.1fs)", timings["cohort_s"])
        out["new"].write.partitionBy("source", "split").parquet(
            str(table.staging_dir(root, run_id))
        )
        quarantine.write.partitionBy("source").parquet(str(table.staging_dir(qroot, run_id)))
        timings["write_s"] = lap()
        log.info("staged Parquet (%.1fs)", timings["write_s"])
        parsed.unpersist()
        keys.unpersist()
    finally:
        shutil.rmtree(units_file.parent, ignore_errors=True)

    record = {
        "kind": "ingest",
        "started_at": now.isoformat(),
        "finished_at": utcnow().isoformat(),
        "inputs": [
            {"format": f, "path": str(p), "sha256": h}
            for (f, p), h in zip(pairs, hashes, strict=True)
        ],
        "work_units": n_units,
        "counts": counts,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "config_hash": cfg.hash(),
        "code_version": code_version(),
    }
    table.commit(qroot, run_id, {"kind": "quarantine", "counts": counts["quarantined"]})
    manifest = table.commit(root, run_id, record)
    write_json_atomic(cfg.path("runs") / f"{run_id}.json", manifest)
    log.info("committed %s: %s", run_id, json.dumps(counts["totals"]))
    return manifest


def _count(keys, quarantine) -> dict:
    """Two small aggregates (never rows) to the driver."""
    rows = (
        keys.groupBy("_state", "source", "split", "split_origin", "eligible", "exclusion_reason")
        .count()
        .collect()
    )
    state = {"new": 0, "seen": 0, "dup_id": 0}
    by_reason, by_split, by_source, moved = {}, {}, {}, 0
    for r in rows:
        state[r["_state"]] += r["count"]
        if r["_state"] != "new":
            continue
        key = "eligible" if r["eligible"] else r["exclusion_reason"]
        by_reason[key] = by_reason.get(key, 0) + r["count"]
        if r["eligible"]:
            by_split[r["split"]] = by_split.get(r["split"], 0) + r["count"]
        s = by_source.setdefault(r["source"], {"new": 0, "eligible": 0})
        s["new"] += r["count"]
        s["eligible"] += r["count"] if r["eligible"] else 0
        moved += r["count"] if r["split_origin"] == "duplicate" else 0
    qrows = quarantine.groupBy("source", "reason").count().collect()
    quarantined = {}
    for r in qrows:
        quarantined.setdefault(r["source"], {})[r["reason"]] = r["count"]
    return {
        "new_by_rule": dict(sorted(by_reason.items())),
        "eligible_by_split": dict(sorted(by_split.items())),
        "by_source": by_source,
        "quarantined": quarantined,
        "duplicate_pairs_moved": moved,
        "totals": {
            "new": state["new"],
            "eligible": by_reason.get("eligible", 0),
            "excluded": state["new"] - by_reason.get("eligible", 0),
            "already_ingested": state["seen"],
            "duplicate_ids": state["dup_id"],
            "quarantined": sum(r["count"] for r in qrows),
        },
    }


def _reconcile(kinds: dict, counts: dict) -> None:
    """Fail loudly unless every parsed item is accounted for exactly once."""
    t = counts["totals"]
    reports = kinds.get("report", 0)
    if reports != t["new"] + t["already_ingested"] + t["duplicate_ids"]:
        raise RuntimeError(f"counts do not reconcile: parsed {reports} reports but {t}")
    if t["quarantined"] < kinds.get("bad", 0) + t["duplicate_ids"]:
        raise RuntimeError(f"counts do not reconcile: {kinds.get('bad', 0)} bad items but {t}")


def print_summary(m: dict) -> None:
    c = m["counts"]
    print(f"ingest {m['run_id']}: {c['totals']}")
    print("  new by rule:       ", c["new_by_rule"])
    print("  eligible by split: ", c["eligible_by_split"])
    print("  quarantined:       ", c["quarantined"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `radgpt ingest` and jobs/ingest_reports.py."""
    p.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="files or dirs (default: ingest.inputs)"
    )
    p.add_argument(
        "--out", help="table root (overrides paths.table); quarantine goes to OUT/_quarantine"
    )
    p.add_argument(
        "--format", choices=("auto", *FORMATS), help="input format (default: detect per input)"
    )
    p.add_argument("--split-file", help="mimic-cxr-2.0.0-split.csv(.gz): official MIMIC-CXR split")


def main(args: argparse.Namespace) -> int:
    from radgpt.cli import config_from_args

    cfg = config_from_args(args, paths__table=args.out)
    manifest = run_ingest(cfg, args.inputs or None, args.format, args.split_file)
    print_summary(manifest)
    return 0


def add_commands(sub) -> None:
    from radgpt.cli import add_config_args

    p = sub.add_parser(
        "ingest",
        help="ingest report exports into the canonical Parquet table (Spark)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    add_arguments(p)
    p.set_defaults(func=main)
