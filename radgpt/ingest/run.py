"""Spark ingest: report exports (MIMIC-CXR, OpenI, CSV, FHIR, HL7) -> the canonical Parquet table.

    radgpt ingest --config conf/local.yaml var/sample
    spark-submit jobs/ingest_reports.py --conf-file conf/cluster.yaml /data/exports/2026-11-23

The driver lists work units (names, sizes, row ranges: never report text) into a JSON-lines file,
each tagged with a partition. Then:
1. (radgpt.ingest.executor) task i of spark.range(partitions).mapInArrow parses its units, keeps its report
   rows in an Arrow file and gives Spark narrow key rows only (ids, hashes, rule outcome);
2. (radgpt.ingest.cohort) the cohort rules and splits run on the cached keys; in the same Spark job
3. (radgpt.ingest.executor) every key's state and split go to tasks that count them and write the new rows'
   Parquet partitions.
The table and the quarantine (<table>/_quarantine) are committed atomically (radgpt.table).
Counts reconcile or the run fails:
    parsed = new (eligible + excluded per reason) + already ingested + duplicate ids,
    written = new, quarantined = unreadable units/rows/messages (+ duplicate ids + unknown files).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from radgpt import table
from radgpt.config import Config, ConfigError
from radgpt.ingest import executor
from radgpt.ingest.sources import detect, reader
from radgpt.runtime import code_version, new_run_id, sha256_file, utcnow, write_json_atomic
from radgpt.schema import spark_schema

log = logging.getLogger(__name__)

UNIT_BYTES = 4096  # nominal size of a unit whose size is unknown (balancing only)


def quarantine_root(cfg: Config) -> Path:
    return cfg.path("table") / "_quarantine"


def resolve_inputs(
    cfg: Config, inputs: list[str], fmt: str
) -> tuple[list[tuple[str, Path]], list[dict]]:
    """[(format, path)] for every input. With format auto, a MIMIC-CXR tree is one input and any
    other directory is expanded (up to 3 levels) into its files and subdirectories.

    Returns also quarantine rows for files whose format cannot be detected (never dropped).
    """
    from radgpt.ingest.sources import mimic

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

    Each line is "<partition>\t<unit json>". Partitions take contiguous runs of units of about
    equal bytes (a unit of unknown size, e.g. a MIMIC-CXR patient folder, counts as UNIT_BYTES):
    neighbouring folders in one task cost ~6% less parse CPU than every parts-th unit. Two passes
    over the file: the first learns the total bytes.
    """
    listed = path.with_name(path.name + ".list")
    total = n = 0
    with open(listed, "w") as f:
        for fmt, p in pairs:
            for unit in reader(fmt).units(p, cfg.ingest):
                size = unit.size or UNIT_BYTES
                f.write(f"{size}\t{json.dumps(vars(unit))}\n")
                total += size
                n += 1
    done = 0  # bytes of the units before this one
    with open(listed) as src, open(path, "w") as f:
        for line in src:
            raw, js = line.split("\t", 1)
            size = int(raw)
            mid = done + size / 2  # the unit goes where its middle byte falls
            f.write(f"{min(parts - 1, int(mid * parts / total))}\t{js}")
            done += size
    listed.unlink()
    return n


def spark_ddl(schema) -> str:
    """A pyarrow schema of flat fields as a Spark DDL string (mapInArrow's output schema)."""
    import pyarrow as pa

    names = {pa.string(): "string", pa.bool_(): "boolean", pa.int32(): "int", pa.int64(): "long"}
    return ", ".join(f"{f.name} {names[f.type]}" for f in schema)


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


def run_ingest(cfg: Config, spark=None) -> dict:
    """Ingest ingest.inputs (as ingest.format) into paths.table incrementally; returns the run
    manifest. `spark`: a session to use (default: one from cfg.spark)."""
    from pyspark import StorageLevel

    from radgpt.ingest.cohort import transform
    from radgpt.runtime import spark_session

    inputs = list(cfg.ingest.inputs)
    if not inputs:
        raise ConfigError("ingest.inputs: no inputs given (pass INPUT paths or set ingest.inputs)")
    fmt = cfg.ingest.format
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

    # the unit list and the parsed rows live beside the table (shared storage on a cluster:
    # executors read and write them); Spark skips files whose name starts with '_' or '.'
    work = root / f"_work-{run_id}"
    units_file = work / "units.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    marks = [time.perf_counter()]

    def lap() -> float:  # seconds since the previous lap
        marks.append(time.perf_counter())
        return marks[-1] - marks[-2]

    try:
        parts = cfg.spark.partitions or 2 * spark.sparkContext.defaultParallelism
        n_units = write_units(cfg, pairs, units_file, parts)
        log.info("%d work units over %d partitions (%.1fs)", n_units, parts, lap())
        timings = {"list_units_s": marks[-1] - marks[-2]}
        parse = executor.parse_fn(cfg.ingest, str(units_file), n_units, str(work))
        parsed = (
            spark.range(parts, numPartitions=parts)
            .mapInArrow(parse, spark_ddl(executor.KEY_SCHEMA))
            .persist(StorageLevel.MEMORY_AND_DISK)  # narrow: keys and quarantine rows
        )
        # the parse's only action: reports, and bad items per (source, reason)
        agg = parsed.groupBy("kind", "source", "reason").count().collect()
        n_parsed = sum(r["count"] for r in agg if r["kind"] == "report")
        bad = {(r["source"], r["reason"]): r["count"] for r in agg if r["kind"] == "bad"}
        timings["parse_s"] = lap()
        log.info(
            "parsed: %d reports, %d bad items (%.1fs)",
            n_parsed,
            sum(bad.values()),
            timings["parse_s"],
        )

        files = [str(p) for p in table.committed_files(root)]
        existing = spark.read.option("basePath", str(root)).parquet(*files) if files else None
        out = transform(parsed.filter("kind = 'report'"), existing, cfg.ingest)
        staging = table.staging_dir(root, run_id)
        write = executor.write_fn(str(work), str(staging), run_id, now)
        rows = (
            out["keys"]
            .select(*executor.STATE.names)
            .repartition(parts, "_part")  # an explicit count: AQE keeps the tasks parallel
            .mapInArrow(write, spark_ddl(executor.WRITTEN))
            .collect()
        )  # the cohort rules and the write in one job: a small row per counted group and per file
        # counts before anything is committed: a run whose counts do not add up commits nothing
        counts = _count([r for r in rows if r["what"] == "count"], bad, unknown_rows)
        _reconcile(n_parsed, counts)
        timings["write_s"] = lap()
        log.info(
            "cohort rules, counts and staged Parquet: %d files (%.1fs)",
            sum(r["what"] == "file" for r in rows),
            timings["write_s"],
        )
        staging.mkdir(parents=True, exist_ok=True)  # a run with nothing new commits no files
        qstaging = table.staging_dir(qroot, run_id)
        if counts["totals"]["quarantined"]:  # planning the union costs ~0.15 s: only when needed
            # the duplicate ids come from the cohort rules again (uncached: rare, and small)
            quarantine = quarantine_df(
                parsed.filter("kind = 'bad'"), out["dup_ids"], unknown_rows, spark, run_id, now
            )
            quarantine.write.partitionBy("source").parquet(str(qstaging))
        qstaging.mkdir(parents=True, exist_ok=True)
        # what was written, from the Parquet footers, against what was counted
        _check_written(table.staged_rows(root, run_id), counts["totals"]["new"], "reports")
        _check_written(
            table.staged_rows(qroot, run_id), counts["totals"]["quarantined"], "quarantine"
        )
        timings["quarantine_s"] = lap()
        log.info("quarantine and footer checks (%.1fs)", timings["quarantine_s"])
        parsed.unpersist()
    finally:
        shutil.rmtree(work, ignore_errors=True)

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


def _count(rows: list, bad: dict, unknown_rows: list[dict]) -> dict:
    """The counts from the write tasks' counts per (state, source, split, origin, rule outcome)
    (radgpt.ingest.executor.write_fn), the parse's bad items per (source, reason) and the inputs of
    unknown format."""
    state = {"new": 0, "seen": 0, "dup_id": 0}
    by_reason, by_split, by_source, moved = {}, {}, {}, 0
    q = dict(bad)  # quarantined items per (source, reason)
    for r in rows:
        n = r["rows"]
        state[r["_state"]] += n
        if r["_state"] == "dup_id":  # a second row with a report_id seen in this run
            k = (r["source"], "duplicate_report_id")
            q[k] = q.get(k, 0) + n
        if r["_state"] != "new":
            continue
        key = "eligible" if r["eligible"] else r["exclusion_reason"]
        by_reason[key] = by_reason.get(key, 0) + n
        if r["eligible"]:
            by_split[r["split"]] = by_split.get(r["split"], 0) + n
        s = by_source.setdefault(r["source"], {"new": 0, "eligible": 0})
        s["new"] += n
        s["eligible"] += n if r["eligible"] else 0
        moved += n if r["split_origin"] == "duplicate" else 0
    for u in unknown_rows:
        q[(u["source"], u["reason"])] = q.get((u["source"], u["reason"]), 0) + 1
    quarantined = {}
    for (source, reason), n in sorted(q.items()):
        quarantined.setdefault(source, {})[reason] = n
    return {
        "new_by_rule": dict(sorted(by_reason.items())),
        "eligible_by_split": dict(sorted(by_split.items())),
        "by_source": dict(sorted(by_source.items())),
        "quarantined": quarantined,
        "duplicate_pairs_moved": moved,
        "totals": {
            "new": state["new"],
            "eligible": by_reason.get("eligible", 0),
            "excluded": state["new"] - by_reason.get("eligible", 0),
            "already_ingested": state["seen"],
            "duplicate_ids": state["dup_id"],
            "quarantined": sum(q.values()),
        },
    }


def _reconcile(n_parsed: int, counts: dict) -> None:
    """Fail loudly unless every parsed report is accounted for exactly once."""
    t = counts["totals"]
    if n_parsed != t["new"] + t["already_ingested"] + t["duplicate_ids"]:
        raise RuntimeError(f"counts do not reconcile: parsed {n_parsed} reports but {t}")


def _check_written(written: int, counted: int, what: str) -> None:
    if written != counted:
        raise RuntimeError(
            f"counts do not reconcile: {written} {what} rows written, {counted} counted"
        )
