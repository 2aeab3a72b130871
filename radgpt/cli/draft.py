"""`radgpt draft`: batch drafting on Ray Data, committed to the drafts table (radgpt.draft.run).

radgpt draft --config conf/local.yaml [--data DIR] [--adapter DIR] [--split NAME] [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("draft", help="draft Impressions on Ray Data and commit them (drafts table)")
    add_config_args(p)
    p.add_argument("--data", help="reports table dir (default: paths.table)")
    p.add_argument("--adapter", help="PEFT adapter dir (default: model.adapter)")
    p.add_argument(
        "--split", help="draft these splits: test | validate,test (sets draft.selection=split)"
    )
    p.add_argument("--limit", type=int, help="at most N reports")
    p.add_argument("--out", help="drafts table dir (default: paths.drafts)")
    p.set_defaults(func=cmd_draft)


def cmd_draft(args: argparse.Namespace) -> int:
    from radgpt.draft.run import run_draft
    from radgpt.runtime import write_json_atomic

    split = args.split or None
    cfg = config(
        args,
        {
            "paths.table": args.data,  # the reports drafted and the retrieval examples
            "model.adapter": args.adapter or None,
            "draft.selection": split and "split",
            "draft.split": split,
            "draft.limit": args.limit or None,
            "paths.drafts": args.out,
        },
    )
    s = run_draft(cfg)
    write_json_atomic(cfg.path("runs") / f"{s['run_id']}.json", s)
    print(json.dumps(s, indent=2, default=str))
    return 0
