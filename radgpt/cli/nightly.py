"""`radgpt nightly`: sample (if missing) -> base model -> ingest -> draft -> write-back (radgpt.nightly).

radgpt nightly --config conf/local.yaml      # what `make run` runs
"""

from __future__ import annotations

import argparse

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nightly", help="ingest new reports, draft Impressions, write back (make run)"
    )
    add_config_args(p)
    p.set_defaults(func=cmd_nightly)


def cmd_nightly(args: argparse.Namespace) -> int:
    from radgpt.nightly import brief, run_nightly

    s = run_nightly(config(args))
    print(brief(s))
    return 0 if s["status"] == "ok" else 1
