"""`radgpt draft`: batch drafting (in process or on Ray Data: draft.executor), committed to the
drafts table (radgpt.draft.run).

    radgpt draft --config conf/local.yaml [--data DIR] [--adapter DIR|none] [--split NAME] [--limit N] [--out DIR]

Selects the reports of the table per draft.selection (default: new eligible reports without a
draft), drafts them with model.adapter on the base model.base (default: the shipped adapter on the
embedded SmolLM2, imported on first use) and commits them; prints and saves the run summary under
paths.runs. `--adapter none` drafts with the base model alone, and the summary says so.
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "draft",
        help="draft Impressions (in process or on Ray Data) and commit them (drafts table)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    p.add_argument("--data", help="reports table dir (default: paths.table)")
    p.add_argument(
        "--adapter", help="PEFT adapter dir (default: model.adapter); none: the base model alone"
    )
    p.add_argument(
        "--split", help="draft these splits: test | validate,test (sets draft.selection=split)"
    )
    p.add_argument("--limit", type=int, help="at most N reports")
    p.add_argument("--out", help="drafts table dir (default: paths.drafts)")
    p.set_defaults(func=cmd_draft)


def no_adapter(args: argparse.Namespace) -> bool:
    """--adapter none: draft with the base model alone (an explicit choice, stated in the summary)."""
    return (args.adapter or "").lower() == "none"


def cmd_draft(args: argparse.Namespace) -> int:
    from radgpt.draft.run import run_draft
    from radgpt.runtime import write_json_atomic

    split = args.split or None
    cfg = config(
        args,
        {
            "paths.table": args.data,  # the reports drafted and the retrieval examples
            "model.adapter": None if no_adapter(args) else args.adapter or None,
            "draft.selection": split and "split",
            "draft.split": split,
            "draft.limit": args.limit or None,
            "paths.drafts": args.out,
        },
    )
    if no_adapter(args):
        cfg.model.adapter = None
    s = run_draft(cfg)
    write_json_atomic(cfg.path("runs") / f"{s['run_id']}.json", s)
    print(json.dumps(s, indent=2, default=str))
    return 0
