"""Drafting analytics with polars: per night and source, counts, flag rates, latency/token percentiles;
per night, the observations behind the consistency flags (omits_finding / adds_finding; every
flag of radgpt.draft.flags.FLAGS, reads_normal included, has its rate).

    radgpt stats --config conf/local.yaml           # a table
    radgpt stats --drafts var/drafts --json         # JSON rows

Reads committed drafts only (radgpt.writeback.fhir.read_drafts). Never prints draft text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radgpt.draft.flags import FLAGS

if TYPE_CHECKING:  # polars is imported where used: the CLI loads on machines without it
    import polars as pl


def summarize(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (run_date, source): n, runs, flag rates, latency_ms/token percentiles, adapters."""
    import polars as pl

    q = lambda c, p: pl.col(c).quantile(p, interpolation="linear").alias(f"{c}_p{int(p * 100)}")  # noqa: E731
    rates = [pl.col("flags").list.contains(f).mean().round(4).alias(f"rate_{f}") for f in FLAGS]
    return (
        df.with_columns(pl.col("adapter_id").fill_null("base"))
        .group_by("run_date", "source")
        .agg(
            pl.len().alias("n"),
            pl.col("run_id").n_unique().alias("runs"),
            (pl.col("flags").list.len() > 0).mean().round(4).alias("flagged_rate"),
            *rates,
            *(q("latency_ms", p) for p in (0.5, 0.9, 0.99)),
            *(q("output_tokens", p) for p in (0.5, 0.9, 0.99)),
            q("prompt_tokens", 0.5),
            pl.col("adapter_id").unique().sort().alias("adapters"),
        )
        .sort("run_date", "source")
    )


def observations(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (run_date, flag, observation) behind a consistency flag: n and the night's rate."""
    import polars as pl

    nights = df.group_by("run_date").agg(pl.len().alias("drafts"))
    obs = df.select("run_date", pl.col("flag_observations").alias("x")).explode("x").drop_nulls()
    parts = pl.col("x").str.split_exact(":", 1)
    return (
        obs.with_columns(
            parts.struct.field("field_0").alias("flag"),
            parts.struct.field("field_1").alias("observation"),
        )  # fmt: skip
        .group_by("run_date", "flag", "observation")
        .agg(pl.len().alias("n"))
        .join(nights, on="run_date")
        .with_columns((pl.col("n") / pl.col("drafts")).round(4).alias("rate"))
        .sort(["run_date", "flag", "n", "observation"], descending=[False, False, True, False])
    )


def load(drafts) -> pl.DataFrame:
    import polars as pl

    from radgpt.writeback.drafts import read_drafts

    return pl.from_arrow(read_drafts(drafts))
