"""Cohort rules that need more than one row: incremental dedup, splits, duplicate pairs (Spark).

`transform(keys, existing, cfg)` is pure (DataFrames in, DataFrames out) and tested in
tests/test_cohort.py. It sees only narrow key rows (no report text); radgpt.ingest.run does the I/O.

Splits:
- official: the source carried a split (MIMIC-CXR with mimic-cxr-2.0.0-split.csv.gz);
- random: seeded and per report (xxhash64 of seed + report_id), in the configured proportions
  (paper's OpenI 2400:292:576), so a report keeps its split across nightly runs;
- duplicate: an exact (findings, impression) pair already seen takes the split of its first
  occurrence (earlier runs win, then official before random, then the smallest report_id), so a
  pair never lands in two splits.

A report_id already committed is `seen`, or `revised` when its bytes (source_sha256) differ from
every committed version of it (the table's row and the revisions table's): a later version, e.g.
the preliminary report signed as final. A revised row keeps its report's split and goes to the
revisions table (radgpt.ingest.versions), never to the reports table.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from radgpt.config import IngestCfg
from radgpt.ingest.executor import REPORT_KEYS
from radgpt.ingest.rows import NO_PAIR


def random_split(cfg: IngestCfg):
    """Column: seeded split from report_id in cfg.split_ratio proportions."""
    a, b, c = cfg.split_ratio
    n = a + b + c
    u = F.pmod(F.xxhash64(F.lit(str(cfg.seed)), F.col("report_id")), F.lit(1_000_000)) / 1e6
    return F.when(u < a / n, "train").when(u < (a + b) / n, "validate").otherwise("test")


def own_split(cfg: IngestCfg):
    """Column: the split a row gets on its own (official if the source has one, else random)."""
    return F.coalesce("official_split", random_split(cfg))


def own_origin():
    return F.when(F.col("official_split").isNotNull(), "official").otherwise("random")


# the narrow key columns the rules read (radgpt.ingest.executor yields them; transform adds _pair)
KEYS = [name for name, _ in REPORT_KEYS]


def has_pair():
    """Column: the row has both Findings and Impression (its first failed rule is not a missing
    section), so its (findings, impression) pair takes part in duplicate-pair splits."""
    return F.coalesce(~F.col("exclusion_reason").isin(*NO_PAIR), F.lit(True))


def mark(
    keys: DataFrame, existing: DataFrame | None, cfg: IngestCfg, revisions: DataFrame | None = None
) -> DataFrame:
    """Narrow key rows (KEYS + _pair: ids, hashes, rule outcome; ~150 bytes a row) -> KEYS with
    _state (new | seen | revised | dup_id), split and split_origin.

    Few projections on purpose: each withColumn re-analyses the plan in the driver."""
    w = Window.partitionBy("report_id").orderBy("source_uri", "source_member", "_part", "_idx")
    keys = keys.withColumns(
        {"_rank": F.row_number().over(w), "_own_split": own_split(cfg), "_own_origin": own_origin()}
    )
    seen, prior = F.lit(False), F.lit(None).cast("string")
    changed = F.lit(False)
    if existing is not None:
        ids = _versions(existing, revisions)
        keys, seen = keys.join(ids, "report_id", "left"), F.col("_shas").isNotNull()
        changed = seen & ~F.array_contains(F.col("_shas"), F.col("source_sha256"))
    keys = keys.withColumn(
        "_state",
        F.when(F.col("_rank") > 1, "dup_id")
        .when(changed, "revised")
        .when(seen, "seen")
        .otherwise("new"),
    )
    # the split of the first occurrence of each (findings, impression) pair among this run's new
    # rows (official before random, then the smallest report_id): one window, no join back
    first = F.when((F.col("_state") == "new") & F.col("_pair"), F.col("_own_split"))
    pw = (
        Window.partitionBy("pair_sha256")
        .orderBy(F.when(F.col("_own_origin") == "official", 0).otherwise(1), "report_id")
        .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    keys = keys.withColumn("_group_split", F.first(first, ignorenulls=True).over(pw))
    if existing is not None:  # earlier runs win
        earlier = (
            existing.filter(has_pair())  # no text columns read
            .groupBy("pair_sha256")
            .agg(F.min("split").alias("_prior_split"))
        )
        keys, prior = keys.join(earlier, "pair_sha256", "left"), F.col("_prior_split")
    split = F.when(F.col("_pair"), F.coalesce(prior, "_group_split", "_own_split")).otherwise(
        F.col("_own_split")
    )
    origin = F.when(split != F.col("_own_split"), "duplicate").otherwise(F.col("_own_origin"))
    if existing is not None:  # a later version keeps its report's split
        rev = F.col("_state") == "revised"
        split = F.when(rev, F.col("_id_split")).otherwise(split)
        origin = F.when(rev, F.col("_id_origin")).otherwise(origin)
    return keys.select(*KEYS, "_state", split.alias("split"), origin.alias("split_origin"))


def _versions(existing: DataFrame, revisions: DataFrame | None) -> DataFrame:
    """Per committed report_id: the source_sha256 of every version, its split and origin."""
    cols = ["report_id", "source_sha256", "split", "split_origin"]
    known = existing.select(*cols)
    if revisions is not None:
        known = known.unionByName(revisions.select(*cols))
    return known.groupBy("report_id").agg(
        F.collect_set("source_sha256").alias("_shas"),
        F.min("split").alias("_id_split"),
        F.min("split_origin").alias("_id_origin"),
    )


def transform(
    keys: DataFrame,
    existing: DataFrame | None,
    cfg: IngestCfg,
    revisions: DataFrame | None = None,
) -> dict[str, DataFrame]:
    """Narrow key rows of this run's parsed reports (KEYS; radgpt.ingest.executor yields them) + the
    committed table -> {'keys', 'new', 'seen', 'dup_ids'}.

    'keys' is every row's KEYS with its _state (new | seen | revised | dup_id), split and split_origin
    (radgpt.ingest.executor.write_fn counts them all and writes the new ones, found in the parsed rows by
    _part and _idx); 'new' are keys of the rows to add; 'seen' are keys of rows already in the
    table (re-runs add nothing); 'dup_ids' are keys of extra rows with a report_id seen twice in
    this run (quarantined). Each view recomputes the rules unless 'keys' is cached.
    """
    keys = mark(keys.select(*KEYS, has_pair().alias("_pair")), existing, cfg, revisions)
    return {
        "keys": keys,
        "new": keys.filter("_state = 'new'"),
        "seen": keys.filter("_state = 'seen'"),
        "dup_ids": keys.filter("_state = 'dup_id'"),
    }
