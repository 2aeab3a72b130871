"""`radgpt writeback`: committed drafts -> FHIR R4B NDJSON (radgpt.writeback.fhir.run_writeback).

radgpt writeback --config conf/local.yaml            # FHIR NDJSON for committed runs not yet exported
radgpt writeback --run-id draft-2024... --force      # re-export one run
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("writeback", help="export committed drafts as FHIR R4B NDJSON")
    add_config_args(p)
    p.add_argument("--drafts", help="drafts table dir (default: paths.drafts)")
    p.add_argument("--run-id", help="one run only (default: every run not yet exported)")
    p.add_argument("--force", action="store_true", help="re-export runs already exported")
    p.set_defaults(func=cmd_writeback)


def cmd_writeback(args: argparse.Namespace) -> int:
    from radgpt.writeback.fhir import run_writeback

    cfg = config(args, {"paths.drafts": args.drafts})
    res = run_writeback(cfg, args.run_id, args.force)
    print(json.dumps({"exported": res}, indent=2))
    return 0
