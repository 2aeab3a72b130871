"""`radgpt stats`: drafting analytics per night and source (radgpt.evaluation.stats, polars).

radgpt stats --config conf/local.yaml           # a table
radgpt stats --drafts var/drafts --json         # JSON rows
radgpt stats --outcomes [--json]                # acceptance / edit rates per night, adapter, flag
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
        "--outcomes",
        action="store_true",
        help="what became of the drafts (radgpt outcomes): accepted / edited / replaced rates and "
        "mean edit distance per night, per adapter and per review flag",
    )
    p.add_argument(
        "--observations",
        action="store_true",
        help="per night, flag and observation behind omits_finding/adds_finding: count and rate",
    )
    p.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    import polars as pl

    from radgpt.evaluation.stats import load, observations, summarize

    cfg = config(args, {"paths.drafts": args.drafts})
    if getattr(args, "outcomes", False):
        return outcome_stats(cfg, args.json)
    drafts = cfg.path("drafts")
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


def outcome_stats(cfg, as_json: bool) -> int:
    """Outcome rates per night, adapter and review flag (radgpt.loop.outcomes.rates)."""
    import polars as pl

    from radgpt.loop.outcomes import rates, read_outcomes

    t = read_outcomes(cfg.path("outcomes"))
    got = {f"by_{k}": rates(t, k) for k in ("night", "adapter", "flag")}
    if as_json:
        print(json.dumps(got, indent=2, default=str))
        return 0
    if not len(t):
        print(
            f"no outcomes in {cfg.path('outcomes')} (run `radgpt outcomes` once final reports arrive)"
        )
        return 0
    with pl.Config(tbl_cols=-1, tbl_rows=-1, tbl_width_chars=1000, tbl_hide_dataframe_shape=True):
        for k, rows in got.items():
            print(f"outcomes {k.replace('_', ' ')}")
            print(pl.DataFrame(rows))
    return 0
