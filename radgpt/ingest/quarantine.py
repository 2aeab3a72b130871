"""The ingest's quarantine rows (schemas/quarantine.json), keyed so that no re-run repeats them.

Every row gets a quarantine_id = sha256(source_uri, source_member, source_sha256, reason, n)[:32],
n numbering the rows of one run that share those four values (ordered by detail, size): the
same unreadable item of the same input has the same id on every run. A run writes only rows
whose id is not committed yet, and counts the others as `already_quarantined`. Rows of a
quarantine written before the column existed (null quarantine_id) get their id computed the same
way when the committed ids are read, so an upgraded table is not quarantined twice either.
"""

from __future__ import annotations

from pathlib import Path

from radgpt import table
from radgpt.schema import spark_schema

KEY = ["source_uri", "source_member", "source_sha256", "reason"]
NULL, SEP = "\u0000", "\u001f"  # a null key part, the separator: neither is in a path or code


def quarantine_df(bad, dup_ids, unknown_rows, spark, run_id, now):
    """The run's quarantine rows as a DataFrame in the contract's order, quarantine_id set:
    the parse's bad items, the cohort's duplicate report ids, the inputs of unknown format."""
    from pyspark.sql import functions as F

    q = spark_schema("quarantine")
    run_cols = ("ingest_run_id", "ingested_at", "quarantine_id")
    cols = [f.name for f in q.fields if f.name not in run_cols]
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
    df = with_ids(df.withColumn("quarantine_id", F.lit(None).cast("string")))
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in q.fields])


def with_ids(df):
    """df with quarantine_id filled where null (module docstring); n counts per run."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.col("detail").asc_nulls_first(), F.col("size_bytes").asc_nulls_first()]
    n = F.row_number().over(Window.partitionBy("ingest_run_id", *KEY).orderBy(*order)) - 1
    parts = [F.coalesce(F.col(c), F.lit(NULL)) for c in KEY] + [n.cast("string")]
    qid = F.substring(F.sha2(F.concat_ws(SEP, *parts), 256), 1, 32)
    return df.withColumn("quarantine_id", F.coalesce(F.col("quarantine_id"), qid))


def committed_ids(spark, qroot: Path):
    """A one-column DataFrame of the committed quarantine ids (computed for rows without one);
    None for an empty quarantine."""
    from pyspark.sql import types as T

    files = [str(p) for p in table.committed_files(qroot)]
    if not files:
        return None
    # source is in the path, not the files; a column the files lack reads as nulls
    fields = [f for f in spark_schema("quarantine").fields if f.name != "source"]
    old = spark.read.schema(T.StructType(fields)).parquet(*files)
    return with_ids(old).select("quarantine_id").distinct()


def write_new(df, spark, qroot: Path, staging: Path) -> int:
    """Write the rows of df whose quarantine_id is not committed in qroot into staging
    (partitioned by source); returns how many rows were left out as committed already."""
    from pyspark import StorageLevel

    ids = committed_ids(spark, qroot)
    if ids is None:
        df.write.partitionBy("source").parquet(str(staging))
        return 0
    df = df.persist(StorageLevel.MEMORY_AND_DISK)  # computed once for the count and the write
    try:
        already = df.join(ids, "quarantine_id", "left_semi").count()
        new = df.join(ids, "quarantine_id", "left_anti").select(df.columns)
        new.write.partitionBy("source").parquet(str(staging))
    finally:
        df.unpersist()
    return already
