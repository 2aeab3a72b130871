"""Evaluation: ROUGE with CIs, CheXpert-style finding agreement, lengths, baselines, report.

    radgpt evaluate --drafts var/drafts --data var/table --split test \
        --baselines constant,nn,zero-shot --out var/eval/latest

Modules: rouge (rouge-score + bootstrap), baselines (constant / nn / zero-shot), score (pure
scoring of a joined frame), run (I/O: read tables, join, score), report (metrics.json, summary.md, report.html + PNGs). See docs/evaluation.md.
The finding labeler is radgpt.model.labeler (shared with drafting's review flags).
Heavy imports stay inside functions so that `radgpt --help` is fast.
"""

from __future__ import annotations

import argparse
import logging


def _main(args: argparse.Namespace) -> int:
    from radgpt.cli import config_from_args
    from radgpt.evaluation.run import run_evaluate

    cfg = config_from_args(args)
    baselines = None
    if args.baselines is not None:
        baselines = [
            b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"
        ]
    try:
        m = run_evaluate(
            cfg,
            drafts=args.drafts,
            data=args.data,
            split=args.split,
            baselines=baselines,
            out=args.out,
            run_ids=args.run_id or None,
            adapter_id=args.adapter_id,
        )
    except ValueError as e:  # bad selection or inputs: a clear message, exit 2
        logging.getLogger("radgpt.evaluate").error("%s", e)
        return 2
    for s, v in m["systems"].items():
        r = v["rouge"]["rouge1"]
        print(f"{s:>16}  ROUGE-1 {r['mean']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}]  "
              f"finding micro-F1 {v['findings']['micro_f1'] or 0:.3f}  n={m['n']}")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from radgpt.cli import add_config_args

    p = sub.add_parser(
        "evaluate",
        help="score drafts (and baselines) against reference Impressions; write a report",
        description="ROUGE-1/2/L with bootstrap CIs, CheXpert-style finding agreement, lengths, "
        "baselines, per source/split; writes metrics.json, summary.md, report.html + PNGs.",
    )
    add_config_args(p)
    p.add_argument("--drafts", help="drafts table dir (default: paths.drafts)")
    p.add_argument(
        "--data", help="canonical reports table dir with the references (default: paths.table)"
    )
    p.add_argument("--split", default="test", help="split(s) to score: test | validate,test | all")
    p.add_argument(
        "--baselines",
        default=None,
        help="comma list of constant,nn,zero-shot or 'none' (default: eval.baselines)",
    )
    p.add_argument(
        "--run-id", action="append", default=[], help="only drafts of this run (repeatable)"
    )
    p.add_argument("--adapter-id", help="only drafts of this adapter")
    p.add_argument("--out", help="report dir (default: paths.runs/<eval run id>)")
    p.set_defaults(func=_main)
