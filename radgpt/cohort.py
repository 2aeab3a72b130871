"""Cohort rules that need more than one row: incremental dedup, splits, duplicate pairs (Spark).

`transform(parsed, existing, cfg, run_id, now)` is pure (DataFrames in, DataFrames out) and tested
in tests/test_cohort.py; radgpt.ingest does the I/O.

Splits:
- official: the source carried a split (MIMIC-CXR with mimic-cxr-2.0.0-split.csv.gz);
- random: seeded and per report (xxhash64 of seed + report_id), in the configured proportions
  (paper's OpenI 2400:292:576), so a report keeps its split across nightly runs;
- duplicate: an exact (findings, impression) pair already seen takes the split of its first
  occurrence (earlier runs win, then official before random, then the smallest report_id), so a
  pair never lands in two splits.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from radgpt.config import IngestCfg
from radgpt.schema import field_names, spark_schema

SPLITS = ("train", "validate", "test")


def random_split(cfg: IngestCfg):
    """Column: seeded split from report_id in cfg.split_ratio proportions."""
    a, b, c = cfg.split_ratio
    n = a + b + c
    u = F.pmod(F.xxhash64(F.lit(str(cfg.seed)), F.col("report_id")), F.lit(1_000_000)) / 1e6
    return F.when(u < a / n, "train").when(u < (a + b) / n, "validate").otherwise("test")


def drop_seen(parsed: DataFrame, existing: DataFrame | None) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Split parsed rows into (new, already ingested, duplicate ids within this run)."""
    w = Window.partitionBy("report_id").orderBy("source_uri", "source_member")
    ranked = parsed.withColumn("_rank", F.row_number().over(w))
    first = ranked.filter("_rank = 1").drop("_rank")
    dup_ids = ranked.filter("_rank > 1").drop("_rank")
    if existing is None:
        return first, first.limit(0), dup_ids
    ids = existing.select("report_id").distinct()
    return first.join(ids, "report_id", "left_anti"), first.join(ids, "report_id", "left_semi"), dup_ids


def assign_splits(new: DataFrame, existing: DataFrame | None, cfg: IngestCfg) -> DataFrame:
    """Add split and split_origin to new rows (see module docstring)."""
    df = new.withColumn(
        "_own_split", F.coalesce(F.col("official_split"), random_split(cfg))
    ).withColumn(
        "_own_origin", F.when(F.col("official_split").isNotNull(), "official").otherwise("random")
    )
    has_pair = F.col("findings").isNotNull() & F.col("impression").isNotNull()
    w = Window.partitionBy("pair_sha256").orderBy(
        F.when(F.col("_own_origin") == "official", 0).otherwise(1), "report_id"
    )
    df = df.withColumn(
        "_group_split", F.when(has_pair, F.first("_own_split").over(w)).otherwise(F.col("_own_split"))
    )
    if existing is not None:
        prior = (
            existing.filter(F.col("findings").isNotNull() & F.col("impression").isNotNull())
            .groupBy("pair_sha256")
            .agg(F.min("split").alias("_prior_split"))
        )
        df = df.join(prior, "pair_sha256", "left")
    else:
        df = df.withColumn("_prior_split", F.lit(None).cast("string"))
    split = F.when(has_pair, F.coalesce("_prior_split", "_group_split")).otherwise(F.col("_own_split"))
    df = df.withColumn("split", split).withColumn(
        "split_origin",
        F.when(F.col("split") != F.col("_own_split"), "duplicate").otherwise(F.col("_own_origin")),
    )
    return df.drop("_own_split", "_own_origin", "_group_split", "_prior_split")


def finalize(df: DataFrame, run_id: str, now: dt.datetime) -> DataFrame:
    """Add run fields and select/cast exactly the contract's columns, in order."""
    df = df.withColumn("ingest_run_id", F.lit(run_id)).withColumn(
        "ingested_at", F.lit(now.replace(tzinfo=None)).cast("timestamp")
    )
    schema = spark_schema("reports")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def transform(
    parsed: DataFrame,
    existing: DataFrame | None,
    cfg: IngestCfg,
    run_id: str,
    now: dt.datetime,
) -> dict[str, DataFrame]:
    """parsed report rows (+ existing committed table) -> {'new', 'seen', 'dup_ids'} DataFrames.

    'new' follows the reports contract; 'seen' are rows already in the table (re-runs add
    nothing); 'dup_ids' are extra rows with a report_id seen twice in this run (quarantined).
    """
    new, seen, dup_ids = drop_seen(parsed, existing)
    new = finalize(assign_splits(new, existing, cfg), run_id, now)
    assert new.columns == field_names("reports")
    return {"new": new, "seen": seen, "dup_ids": dup_ids}
