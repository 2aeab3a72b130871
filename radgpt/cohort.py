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


def mark(parsed: DataFrame, existing: DataFrame | None, cfg: IngestCfg) -> DataFrame:
    """Add _state (new | seen | dup_id), split and split_origin to every parsed row.

    The rules run on a narrow key table (ids, hashes, official split: ~100 bytes a row) and are
    joined back once, so report text is shuffled once at most (AQE broadcasts small key tables).
    """
    keys = parsed.select("report_id", "source_uri", "source_member", "pair_sha256", "official_split",
                         (F.col("findings").isNotNull() & F.col("impression").isNotNull()).alias("_pair"))  # fmt: skip
    w = Window.partitionBy("report_id").orderBy("source_uri", "source_member")
    keys = keys.withColumn("_rank", F.row_number().over(w))
    if existing is not None:
        seen = existing.select("report_id").distinct().withColumn("_seen", F.lit(True))
        keys = keys.join(seen, "report_id", "left")
    else:
        keys = keys.withColumn("_seen", F.lit(None).cast("boolean"))
    keys = keys.withColumn(
        "_state",
        F.when(F.col("_rank") > 1, "dup_id").when(F.col("_seen"), "seen").otherwise("new"),
    )
    keys = keys.withColumn(
        "_own_split", F.coalesce("official_split", random_split(cfg))
    ).withColumn(
        "_own_origin", F.when(F.col("official_split").isNotNull(), "official").otherwise("random")
    )
    # first occurrence of each (findings, impression) pair among this run's new rows
    new_pairs = keys.filter((F.col("_state") == "new") & F.col("_pair"))
    pw = Window.partitionBy("pair_sha256").orderBy(
        F.when(F.col("_own_origin") == "official", 0).otherwise(1), "report_id"
    )
    group = (
        new_pairs.withColumn("_n", F.row_number().over(pw))
        .filter("_n = 1")
        .select("pair_sha256", F.col("_own_split").alias("_group_split"))
    )
    keys = keys.join(group, "pair_sha256", "left")
    if existing is not None:  # earlier runs win
        prior = (
            existing.filter(F.col("findings").isNotNull() & F.col("impression").isNotNull())
            .groupBy("pair_sha256")
            .agg(F.min("split").alias("_prior_split"))
        )
        keys = keys.join(prior, "pair_sha256", "left")
    else:
        keys = keys.withColumn("_prior_split", F.lit(None).cast("string"))
    split = F.when(F.col("_pair"), F.coalesce("_prior_split", "_group_split", "_own_split"))
    keys = keys.withColumn("split", split.otherwise(F.col("_own_split"))).withColumn(
        "split_origin",
        F.when(F.col("split") != F.col("_own_split"), "duplicate").otherwise(F.col("_own_origin")),
    )
    on = ["report_id", "source_uri", "source_member"]
    keys = keys.select(*[F.col(c).alias(f"_k_{c}") for c in on], "_state", "split", "split_origin")
    # null-safe: source_member is NULL for single-report files
    cond = [F.col(c).eqNullSafe(F.col(f"_k_{c}")) for c in on]
    return parsed.join(keys, cond, "inner").drop(*[f"_k_{c}" for c in on])


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
    """parsed report rows (+ existing committed table) -> {'marked', 'new', 'seen', 'dup_ids'}.

    'marked' is every parsed row with its status; 'new' follows the reports contract; 'seen'
    are rows already in the table (re-runs add nothing); 'dup_ids' are extra rows with a
    report_id seen twice in this run (quarantined). Cache 'marked' when using several views.
    """
    marked = mark(parsed, existing, cfg)
    new = finalize(marked.filter("_state = 'new'"), run_id, now)
    assert new.columns == field_names("reports")
    return {
        "marked": marked,
        "new": new,
        "seen": marked.filter("_state = 'seen'"),
        "dup_ids": marked.filter("_state = 'dup_id'"),
    }
