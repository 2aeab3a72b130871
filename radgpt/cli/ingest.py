"""`radgpt ingest`: report exports -> the canonical Parquet table (radgpt.ingest.run.run_ingest).

    radgpt ingest --config conf/local.yaml var/sample
    radgpt ingest [--out DIR] [--format FMT] [--split-file CSV] [INPUT ...]

jobs/ingest_reports.py (spark-submit) takes the same options through `add_arguments` and `flags`.
"""

from __future__ import annotations

import argparse

from radgpt.cli import config, documented


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `radgpt ingest` and jobs/ingest_reports.py."""
    from radgpt.ingest.sources import FORMATS

    p.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="files or dirs (default: ingest.inputs)"
    )
    p.add_argument(
        "--out", help="table root (overrides paths.table); quarantine goes to OUT/_quarantine"
    )
    p.add_argument(
        "--format", choices=("auto", *FORMATS), help="input format (default: detect per input)"
    )
    p.add_argument("--split-file", help="mimic-cxr-2.0.0-split.csv(.gz): official MIMIC-CXR split")


def flags(args: argparse.Namespace) -> dict:
    """The options of `add_arguments` as config overrides (None = not given)."""
    return {
        "paths.table": args.out,
        "ingest.inputs": args.inputs or None,
        "ingest.format": args.format,
        "ingest.split_file": args.split_file or None,
    }


def print_summary(m: dict) -> None:
    c = m["counts"]
    print(f"ingest {m['run_id']}: {c['totals']}")
    print("  new by rule:       ", c["new_by_rule"])
    print("  eligible by split: ", c["eligible_by_split"])
    print("  quarantined:       ", c["quarantined"])


def add(sub: argparse._SubParsersAction) -> None:
    help = "ingest report exports into the canonical Parquet table (Spark)"
    p = documented(sub, "ingest", help, "radgpt.ingest.run")
    add_arguments(p)
    p.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from radgpt.ingest.run import run_ingest

    print_summary(run_ingest(config(args, flags(args))))
    return 0
