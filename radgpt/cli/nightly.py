"""`radgpt nightly`: sample (if missing) -> base model -> ingest -> draft -> write-back (radgpt.nightly).

    radgpt nightly --config conf/local.yaml      # what `make run` runs
    radgpt nightly --out /data/radgpt            # every output under one root, run summaries too

Each step commits atomically; the first failure stops the night, is named in the summary (printed
and saved as <paths.runs>/nightly-<ts>-<hex>.json) and makes the exit code 1.
"""

from __future__ import annotations

import argparse

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nightly",
        help="ingest new reports, draft Impressions, write back (make run)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    p.add_argument(
        "--out",
        help="root of every output: table, quarantine, drafts, FHIR, run summaries (sets paths.root)",
    )
    p.set_defaults(func=cmd_nightly)


def cmd_nightly(args: argparse.Namespace) -> int:
    from radgpt.nightly import brief, run_nightly

    s = run_nightly(config(args, {"paths.root": args.out}))
    print(brief(s))
    return 0 if s["status"] == "ok" else 1
