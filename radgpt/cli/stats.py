"""`radgpt stats`: drafting analytics per night and source (radgpt.evaluation.stats, polars).

radgpt stats --config conf/local.yaml           # a table
radgpt stats --drafts var/drafts --json         # JSON rows
radgpt stats --observations [--json]            # per night: the observations behind the flags
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="per night and source: counts, flag rates, latency, adapters")
    add_config_args(p)
    p.add_argument("--drafts", help="drafts table dir (default: paths.drafts)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument(
        "--observations",
        action="store_true",
        help="per night, flag and observation behind omits_finding/adds_finding: count and rate",
    )
    p.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    import polars as pl

    from radgpt.evaluation.stats import load, observations, summarize

    drafts = config(args, {"paths.drafts": args.drafts}).path("drafts")
    df = load(drafts)
    s = observations(df) if args.observations else summarize(df)
    if args.json:
        print(json.dumps(s.to_dicts(), indent=2))
        return 0
    if not len(s):
        print(f"no committed drafts in {drafts}")
        return 0
    key = ["run_date", "source"]
    if args.observations:
        with pl.Config(tbl_rows=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
            print(s)
        return 0
    with pl.Config(tbl_cols=-1, tbl_rows=-1, tbl_width_chars=1000, tbl_hide_dataframe_shape=True):
        print(s.select(pl.exclude("^rate_.*$")).with_columns(pl.col("adapters").list.join(",")))
        print(s.select(*key, pl.col("^rate_.*$").name.map(lambda c: c[5:])))  # flag rates
    return 0
