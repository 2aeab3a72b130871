"""`radgpt ingest`: report exports -> the canonical Parquet table (radgpt.ingest.run.run_ingest).

    radgpt ingest --config conf/local.yaml var/sample
    radgpt ingest [--out DIR] [--format FMT] [--split-file CSV] [--full] [INPUT ...]

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
        "--out", help="table root (overrides paths.table); the quarantine goes to paths.quarantine"
    )
    p.add_argument(
        "--format", choices=("auto", *FORMATS), help="input format (default: detect per input)"
    )
    p.add_argument("--split-file", help="mimic-cxr-2.0.0-split.csv(.gz): official MIMIC-CXR split")
    p.add_argument(
        "--full",
        action="store_true",
        help="read every input, also those committed unchanged (sets ingest.skip_unchanged=false;"
        " a backfill, or after a reader fix)",
    )


def flags(args: argparse.Namespace) -> dict:
    """The options of `add_arguments` as config overrides (None = not given)."""
    return {
        "paths.table": args.out,
        "ingest.inputs": args.inputs or None,
        "ingest.format": args.format,
        "ingest.split_file": args.split_file or None,
        "ingest.skip_unchanged": False if args.full else None,
    }


def print_summary(m: dict) -> None:
    c = m["counts"]
    print(f"ingest {m['run_id']}: {c['totals']}")
    print("  new by rule:       ", c["new_by_rule"])
    print("  eligible by split: ", c["eligible_by_split"])
    print("  quarantined:       ", c["quarantined"])
    if c.get("status_corrected"):  # the sources' corrected/amended statuses, by outcome
        print("  status corrected:  ", c["status_corrected"])
    # every record of every input, per source (counts.by_file in the manifest: per input)
    print(
        "  records by source:  seen = new + corrected + already ingested + quarantined (+ unread)"
    )
    for source, n in c["by_source"].items():
        unread = f" + {n['unread']} unread" if n.get("unread") else ""
        print(
            f"    {source:<8} {n['seen']} = {n['new']} new ({n['excluded']} excluded) + "
            f"{n.get('corrected', 0)} corrected + {n['already_ingested']} already ingested + "
            f"{n['quarantined']} quarantined ({n['duplicate_ids']} duplicate ids){unread}"
        )
    odd = sum(1 for f in c["by_file"].values() if f["quarantined"])
    print(f"  inputs with quarantined records: {odd} of {len(c['by_file'])}")
    runs = sorted({f["committed_by"] for f in c["by_file"].values() if f.get("skipped")})
    if runs:  # the input ledger (radgpt.ingest.ledger): not parsed this run
        said = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        print(
            f"  skipped unchanged:  {c['totals']['skipped_inputs']} inputs, not read "
            f"(committed by {said}; --full reads them)"
        )


def add(sub: argparse._SubParsersAction) -> None:
    help = "ingest report exports into the canonical Parquet table (Spark)"
    p = documented(sub, "ingest", help, "radgpt.ingest.run")
    add_arguments(p)
    p.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from radgpt.ingest.run import run_ingest

    print_summary(run_ingest(config(args, flags(args))))
    return 0
