"""Spark ingest: report exports (MIMIC-CXR, OpenI, CSV, FHIR, HL7) -> the canonical Parquet table.

    radgpt ingest --config conf/local.yaml var/sample
    spark-submit jobs/ingest_reports.py --config conf/cluster.yaml /data/exports/2026-11-23

Inputs that a committed run read with the same content are skipped unparsed (the ledger in the
manifests, radgpt.ingest.ledger; ingest.skip_unchanged, `--full`). The driver lists the work units
of the others (names, sizes, row ranges: never report text) into a JSON-lines file, each tagged
with a partition (radgpt.ingest.plan). Then:
1. (radgpt.ingest.executor) task i of spark.range(partitions).mapInArrow parses its units, keeps its report
   rows in an Arrow file and gives Spark narrow key rows only (ids, hashes, rule outcome);
2. (radgpt.ingest.cohort) the cohort rules, versions and splits run on the cached keys; in the
   same Spark job
3. (radgpt.ingest.executor) every key's state and split go to tasks that count them and write the
   Parquet partitions of the new rows and of new versions (corrected reports).
The table and the quarantine (paths.quarantine, outside the table's hive tree) are committed
atomically (radgpt.table).
Counts reconcile or the run fails (radgpt.ingest.counts):
    parsed = new + corrected (eligible + excluded per reason) + already ingested + duplicate ids,
    per input and in total: records seen = new + corrected + already ingested + quarantined
    (+ unread), written = new + corrected,
    quarantined = unreadable units/rows/messages (+ duplicate ids + unknown files).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from radgpt import table
from radgpt.config import Config, ConfigError
from radgpt.ingest import executor, ledger
from radgpt.ingest.counts import add_skipped, count, reconcile
from radgpt.ingest.plan import write_units
from radgpt.ingest.quarantine import quarantine_df
from radgpt.ingest.quarantine import write_new as write_new_quarantine
from radgpt.ingest.sources import detect
from radgpt.runtime import code_version, new_run_id, utcnow, write_json_atomic
from radgpt.schema import spark_schema

log = logging.getLogger(__name__)
FEW_KEYS = 50_000  # parsed reports up to which the cohort rules broadcast this run's ids


def quarantine_root(cfg: Config) -> Path:
    """The quarantine table (paths.quarantine). A quarantine that an older version kept inside the
    table (<table>/_quarantine, which broke `<table>/**/*.parquet` globs) is moved there once."""
    q, old = cfg.path("quarantine"), cfg.path("table") / "_quarantine"
    if old.is_dir() and not q.exists():
        q.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, q)  # one rename: its manifests and files move together
        log.warning("moved the quarantine out of the table: %s -> %s", old, q)
    return q


def resolve_inputs(
    cfg: Config, inputs: list[str], fmt: str
) -> tuple[list[tuple[str, Path]], list[dict]]:
    """[(format, path)] for every input. With format auto, a MIMIC-CXR tree is one input and any
    other directory is expanded (up to 3 levels) into its files and subdirectories.

    Returns also quarantine rows for files of unknown format and for entries that cannot be
    inputs (links out of the input: never opened, loops, dangling links, FIFOs, devices: see
    radgpt.ingest.sources.tree); names matching ingest.ignore are skipped without a row.
    """
    from radgpt.ingest.sources import mimic, tree

    out, bad = [], []

    def quarantine(uri: str, reason: str, detail: str, size: int | None = None) -> None:
        bad.append({"source": "unknown", "source_uri": uri, "source_member": None, "source_sha256":
                    None, "reason": reason, "detail": detail, "size_bytes": size})  # fmt: skip

    def add(p: Path) -> None:
        try:
            out.append((detect(p), p))
        except ValueError:
            detail = "no reader recognises this input; pass --format"
            quarantine(str(p), "unknown_format", detail, p.stat().st_size if p.is_file() else None)

    def walk(p: Path, depth: int, root: str, ancestors: tuple[str, ...]) -> None:
        if p.is_file() or (p.is_dir() and (mimic.detect(p) or depth == 0)):
            add(p)
            return
        for e in tree.children(str(p), root, cfg.ingest.ignore):
            down = tree.into(e, ancestors) if e.kind == tree.DIR else e
            if isinstance(down, tuple):  # a folder (or a link to one inside the root)
                walk(Path(down[-1]), depth - 1, root, down)
            elif down.kind == tree.FILE:
                walk(Path(down.real), depth - 1, root, ancestors)
            else:
                quarantine(down.path, down.kind, down.detail)

    for raw in inputs:
        p = Path(raw.format(root=cfg.paths.root)).expanduser().resolve()
        if not p.exists():
            raise FileNotFoundError(f"ingest input does not exist: {p}")
        top = tree.check(str(p), str(p))
        if top.kind not in (tree.FILE, tree.DIR):
            quarantine(str(p), top.kind, top.detail)
        elif fmt != "auto":
            out.append((fmt, p))
        else:
            walk(p, 3, str(p), (str(p),))
    return out, bad


def spark_ddl(schema) -> str:
    """A pyarrow schema of flat fields as a Spark DDL string (mapInArrow's output schema)."""
    import pyarrow as pa

    names = {pa.string(): "string", pa.bool_(): "boolean", pa.int32(): "int", pa.int64(): "long"}
    return ", ".join(f"{f.name} {names[f.type]}" for f in schema)


def run_ingest(cfg: Config, spark=None) -> dict:
    """Ingest ingest.inputs (as ingest.format) into paths.table incrementally; returns the run
    manifest. `spark`: a session to use (default: one from cfg.spark).

    The run holds the table's lock, then the quarantine's (radgpt.table.locked; another ingest
    fails at once or waits ingest.lock_wait_s) from before their recovery to after their commits.
    On every way out (an error, SIGTERM, Ctrl-C) its work files and staged rows are removed;
    interrupted, its Spark jobs are cancelled first (the tasks write those files)."""
    from radgpt.exits import exit_on_sigterm

    if not cfg.ingest.inputs:
        raise ConfigError("ingest.inputs: no inputs given (pass INPUT paths or set ingest.inputs)")
    run_id, now = new_run_id("ingest"), utcnow()
    root, wait = cfg.path("table"), cfg.ingest.lock_wait_s
    with exit_on_sigterm(), table.locked(root, run_id, wait, "ingest"):
        qroot = quarantine_root(cfg)  # moves an old in-table quarantine: under the table's lock
        with table.locked(qroot, run_id, wait, "ingest"):
            for r in (root, qroot):
                table.recover(r)  # under both locks: never a live run's files
            try:
                return _ingest(cfg, spark, run_id, now, root, qroot)
            finally:  # committed runs have no staging left; failed ones leave none
                for r in (root, qroot):
                    shutil.rmtree(table.staging_dir(r, run_id), ignore_errors=True)


def _ingest(cfg: Config, spark, run_id: str, now, root: Path, qroot: Path) -> dict:
    """run_ingest's run, under the locks: inputs committed unchanged are skipped (the ledger,
    radgpt.ingest.ledger); Spark starts only when an input is to be read."""
    from radgpt.cluster import spark_session

    pairs, unknown_rows = resolve_inputs(cfg, list(cfg.ingest.inputs), cfg.ingest.format)
    t = time.perf_counter()
    states = ledger.states(pairs, cfg.ingest)  # sha256 of every input: read, not parsed
    hash_s = time.perf_counter() - t
    done = ledger.committed(root) if cfg.ingest.skip_unchanged else {}
    todo, skipped = ledger.split(states, done)
    read = [pairs[i] for i in todo]
    log.info(
        "run %s: %d inputs (%s), %d skipped as committed unchanged",
        run_id, len(read), ", ".join(sorted({f for f, _ in read})), len(skipped),
    )  # fmt: skip
    if read or unknown_rows:
        spark = spark or spark_session(cfg)
        counts, n_units, timings, already = _stage(cfg, spark, run_id, now, root, qroot, read,
                                                   unknown_rows)  # fmt: skip
    else:  # nothing to read: no Spark session, no job; the run still commits its ledger
        counts, n_units, timings, already = count([], [], [], []), 0, {}, 0
        counts["totals"]["already_quarantined"] = 0
        for r in (root, qroot):
            table.staging_dir(r, run_id).mkdir(parents=True, exist_ok=True)
    add_skipped(counts, skipped)
    timings = {"hash_inputs_s": hash_s, **timings}

    record = {
        "kind": "ingest",
        "started_at": now.isoformat(),
        "finished_at": utcnow().isoformat(),
        # the ledger (radgpt.ingest.ledger): each input's state, done by this run or skipped
        "inputs": ledger.entries([states[i] for i in todo], counts["by_file"], run_id, skipped),
        "work_units": n_units,
        "counts": counts,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "config_hash": cfg.hash(),
        "code_version": code_version(),
    }
    # the quarantine first: a crash before the reports' commit loses no quarantined item, and
    # the re-run commits the reports and skips the quarantine rows committed here (their ids)
    qrecord = {
        "kind": "quarantine",
        "counts": counts["quarantined"],
        "already_quarantined": already,
    }
    table.commit(qroot, run_id, qrecord)
    manifest = table.commit(root, run_id, record)
    write_json_atomic(cfg.path("runs") / f"{run_id}.json", manifest)
    log.info("committed %s: %s", run_id, json.dumps(counts["totals"]))
    return manifest


def existing_reports(spark, root: Path, files: list[str]):
    """The committed reports table for the cohort rules (None when empty), read in the contract's
    schema: files written before a nullable column existed (content_sha256, version) read it as
    nulls, whichever file Spark would have taken the schema from."""
    if not files:
        return None
    return spark.read.schema(spark_schema("reports")).option("basePath", str(root)).parquet(*files)


def _log_versions(counts: dict) -> None:
    """Say what happened to corrected reports (counts only, never text)."""
    n, said = counts["totals"]["corrected"], counts["status_corrected"]
    if n:
        log.info("%d reports came with changed content: written as new versions", n)
    if said.get("already_ingested"):
        log.warning(
            "%d reports have a corrected/amended status but the content of their ingested version:"
            " kept as already ingested",
            said["already_ingested"],
        )


def _check_written(written: int, counted: int, what: str) -> None:
    if written != counted:
        raise RuntimeError(
            f"counts do not reconcile: {written} {what} rows written, {counted} counted"
        )


def _stage(cfg: Config, spark, run_id, now, root: Path, qroot: Path, pairs, unknown_rows):
    """Parse `pairs`, run the cohort rules, stage the reports and the quarantine and check the
    counts: (counts, work units, timings, already quarantined)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from radgpt.cluster import cancel_spark_jobs
    from radgpt.exits import terminating
    from radgpt.ingest.cohort import transform

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
        cores = spark.sparkContext.defaultParallelism
        index = write_units(cfg, pairs, units_file, cfg.spark.partitions, cores)
        parts, n_units = len(index), sum(n for _, _, n in index)
        log.info("%d work units over %d partitions (%.1fs)", n_units, parts, lap())
        timings = {"list_units_s": marks[-1] - marks[-2]}
        parse = executor.parse_fn(cfg.ingest, str(units_file), index, str(work))
        parsed = (
            spark.range(parts, numPartitions=parts)
            .mapInArrow(parse, spark_ddl(executor.KEY_SCHEMA))
            .persist(StorageLevel.MEMORY_AND_DISK)  # narrow: keys and quarantine rows
        )
        # the parse's only action: reports, bad items and records seen per (source, reason, input)
        agg = (
            parsed.groupBy("kind", "source", "reason", "_input")
            .agg(
                F.count(F.lit(1)).alias("count"),
                F.sum("seen").alias("seen"),
                F.sum("unread").alias("unread"),
            )  # fmt: skip
            .collect()
        )
        n_parsed = sum(r["count"] for r in agg if r["kind"] == "report")
        timings["parse_s"] = lap()
        log.info(
            "parsed: %d reports, %d bad items (%.1fs)",
            n_parsed,
            sum(r["count"] for r in agg if r["kind"] == "bad"),
            timings["parse_s"],
        )

        files = [str(p) for p in table.committed_files(root)]
        existing = existing_reports(spark, root, files)
        few = n_parsed <= FEW_KEYS  # the table's rows cut to this run's ids first (broadcast)
        out = transform(parsed.filter("kind = 'report'"), existing, cfg.ingest, few)
        staging = table.staging_dir(root, run_id)
        write = executor.write_fn(str(work), str(staging), run_id, now)
        rows = (
            out["keys"]
            .select(*executor.STATE.names)
            .repartition(parts, "_part")  # an explicit count: AQE keeps the tasks parallel
            .mapInArrow(write, spark_ddl(executor.WRITTEN))
            .collect()
        )  # the cohort rules and the write in one job: a small row per counted group and per file
        # counts before anything is committed: a run whose counts do not add up, in total or for
        # one input, commits nothing (radgpt.ingest.counts)
        counts = count([r for r in rows if r["what"] != "file"], agg, unknown_rows, pairs)
        reconcile(n_parsed, counts)
        _log_versions(counts)
        timings["write_s"] = lap()
        log.info(
            "cohort rules, counts and staged Parquet: %d files (%.1fs)",
            sum(r["what"] == "file" for r in rows),
            timings["write_s"],
        )
        staging.mkdir(parents=True, exist_ok=True)  # a run with nothing new commits no files
        qstaging = table.staging_dir(qroot, run_id)
        already = 0  # quarantined items whose row an earlier run committed (quarantine_id)
        if counts["totals"]["quarantined"]:  # planning the union costs ~0.15 s: only when needed
            # the duplicate ids come from the cohort rules again (uncached: rare, and small)
            quarantine = quarantine_df(
                parsed.filter("kind = 'bad'"), out["dup_ids"], unknown_rows, spark, run_id, now
            )
            already = write_new_quarantine(quarantine, spark, qroot, qstaging)
        counts["totals"]["already_quarantined"] = already
        qstaging.mkdir(parents=True, exist_ok=True)
        # what was written, from the Parquet footers, against what was counted
        t = counts["totals"]
        _check_written(table.staged_rows(root, run_id), t["new"] + t["corrected"], "reports")
        _check_written(
            table.staged_rows(qroot, run_id), counts["totals"]["quarantined"] - already,
            "quarantine",
        )  # fmt: skip
        timings["quarantine_s"] = lap()
        log.info("quarantine and footer checks (%.1fs)", timings["quarantine_s"])
        parsed.unpersist()
    except BaseException as e:
        if not isinstance(e, Exception) or terminating():  # SIGTERM, Ctrl-C: tasks may still run
            cancel_spark_jobs(spark)  # and write work files
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts, n_units, timings, already
