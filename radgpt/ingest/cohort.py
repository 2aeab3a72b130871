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

Versions: a report_id already in the table whose record comes with other content (content_sha256:
radgpt.ingest.rows.content_hash) is `corrected`, a new version of the report (version n + 1,
supersedes the latest version's source_sha256) that keeps the split and split origin of its
first version: a corrected report never moves between train and test (its new pair may then sit
in another split than a twin: the report's split wins). Bytes identical to any of its versions,
or content equal to its latest version's (a status-only change: FHIR corrected, HL7 C with the
same text), is `seen`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from radgpt.config import IngestCfg
from radgpt.ingest.executor import REPORT_KEYS
from radgpt.ingest.rows import CORRECTION_STATUSES, NO_PAIR


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


def latest(existing: DataFrame) -> DataFrame:
    """report_id -> _cur (the latest version's version, source_sha256, content_sha256, pair_sha256,
    split, split_origin) and _shas (the source_sha256 of all its versions). Narrow columns only;
    a null version (a file written before versions) is 1."""
    v = F.coalesce(F.col("version"), F.lit(1)).alias("v")
    cur = F.struct(v, "source_sha256", "content_sha256", "pair_sha256", "split", "split_origin")
    return existing.groupBy("report_id").agg(
        F.max(cur).alias("_cur"), F.collect_set("source_sha256").alias("_shas")
    )


def mark(
    keys: DataFrame, existing: DataFrame | None, cfg: IngestCfg, few: bool = False
) -> DataFrame:
    """Narrow key rows (KEYS + _pair: ids, hashes, rule outcome; ~150 bytes a row) -> KEYS with
    _state (new | corrected | seen | dup_id), split, split_origin, version, supersedes, _amended.

    A report_id already in the table is `seen` when this record's bytes are those of one of its
    versions (a re-export, an old export run again) or its content (content_sha256; pair_sha256
    where the table's row predates content_sha256) equals the latest version's; else it is
    `corrected`: version latest + 1, superseding the latest, in the latest version's split.

    few: this run's keys are few against the table (an incremental night): the table's rows are
    first cut to this run's report ids and pairs by broadcast semi-joins, so the rules aggregate
    those rows only, not the whole table (the same result).

    Few projections on purpose: each withColumn re-analyses the plan in the driver."""
    if existing is not None and few:
        ids = F.broadcast(keys.select("report_id"))
        pairs = F.broadcast(keys.filter(F.col("_pair")).select("pair_sha256"))
        mine, twins = (existing.join(ids, "report_id", "left_semi"),
                       existing.join(pairs, "pair_sha256", "left_semi"))  # fmt: skip
    else:
        mine = twins = existing
    w = Window.partitionBy("report_id").orderBy("source_uri", "source_member", "_part", "_idx")
    amended = F.coalesce(F.lower("status").isin(*CORRECTION_STATUSES), F.lit(False))
    keys = keys.withColumns(
        {"_rank": F.row_number().over(w), "_own_split": own_split(cfg), "_own_origin": own_origin(),
         "_amended": amended}
    )  # fmt: skip
    cur = F.lit(None).cast("struct<v:int,source_sha256:string,content_sha256:string,"
                           "pair_sha256:string,split:string,split_origin:string>")  # fmt: skip
    same = F.lit(False)
    if existing is not None:
        keys, cur = keys.join(latest(mine), "report_id", "left"), F.col("_cur")
        same = F.array_contains("_shas", F.col("source_sha256")) | F.coalesce(
            F.col("content_sha256") == cur["content_sha256"],
            F.col("pair_sha256") == cur["pair_sha256"],
        )
    keys = keys.withColumn(
        "_state",
        F.when(F.col("_rank") > 1, "dup_id")
        .when(cur.isNull(), "new")
        .when(same, "seen")
        .otherwise("corrected"),
    )
    fixed = F.when(F.col("_state") == "corrected", cur["split"])  # a new version keeps its split
    # the split of the first occurrence of each (findings, impression) pair among this run's
    # written rows (new versions first: their split is fixed; then official before random, then
    # the smallest report_id): one window, no join back
    written = F.col("_state").isin("new", "corrected") & F.col("_pair")
    first = F.when(written, F.coalesce(fixed, "_own_split"))
    order = F.when(fixed.isNotNull(), 0).when(F.col("_own_origin") == "official", 1).otherwise(2)
    pw = (
        Window.partitionBy("pair_sha256")
        .orderBy(order, "report_id")
        .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    keys = keys.withColumn("_group_split", F.first(first, ignorenulls=True).over(pw))
    prior = F.lit(None).cast("string")
    if existing is not None:  # earlier runs win
        earlier = (
            twins.filter(has_pair())  # no text columns read
            .groupBy("pair_sha256")
            .agg(F.min("split").alias("_prior_split"))
        )
        keys, prior = keys.join(earlier, "pair_sha256", "left"), F.col("_prior_split")
    split = F.when(F.col("_pair"), F.coalesce(prior, "_group_split", "_own_split")).otherwise(
        F.col("_own_split")
    )
    origin = F.when(split != F.col("_own_split"), "duplicate").otherwise(F.col("_own_origin"))
    corrected = F.col("_state") == "corrected"
    version = F.when(corrected, cur["v"] + 1).when(F.col("_state") == "new", 1)
    return keys.select(
        *KEYS,
        "_state",
        F.coalesce(fixed, split).alias("split"),
        F.when(corrected, cur["split_origin"]).otherwise(origin).alias("split_origin"),
        version.cast("int").alias("version"),
        F.when(corrected, cur["source_sha256"]).alias("supersedes"),
        "_amended",
    )


def transform(
    keys: DataFrame, existing: DataFrame | None, cfg: IngestCfg, few: bool = False
) -> dict[str, DataFrame]:
    """Narrow key rows of this run's parsed reports (KEYS; radgpt.ingest.executor yields them) + the
    committed table -> {'keys', 'new', 'corrected', 'seen', 'dup_ids'}.

    'keys' is every row's KEYS with its _state (new | corrected | seen | dup_id), split,
    split_origin, version, supersedes and _amended (radgpt.ingest.executor.write_fn counts them all
    and writes the new and corrected ones, found in the parsed rows by _part and _idx); 'new' are
    keys of first versions to add; 'corrected' of new versions of reports in the table; 'seen' are
    keys of rows already in the table (re-runs add nothing); 'dup_ids' are keys of extra rows with
    a report_id seen twice in this run (quarantined). Each view recomputes the rules unless 'keys'
    is cached. few: see `mark`.
    """
    keys = mark(keys.select(*KEYS, has_pair().alias("_pair")), existing, cfg, few)
    return {
        "keys": keys,
        "new": keys.filter("_state = 'new'"),
        "corrected": keys.filter("_state = 'corrected'"),
        "seen": keys.filter("_state = 'seen'"),
        "dup_ids": keys.filter("_state = 'dup_id'"),
    }
