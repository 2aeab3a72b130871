"""`radgpt evaluate` and `radgpt review`: scores and the expert rubric (radgpt.evaluation).

    radgpt evaluate --drafts var/drafts --data var/table --split test \
        --baselines constant,nn,zero-shot --out var/eval/latest
    radgpt review export --drafts var/drafts --data var/table --split test -k 25 --seed 7 \
        --baselines nn --out var/review/p1          # packet.csv + packet.html; key: var/review/p1.key.json
    radgpt review import --key var/review/p1.key.json ratings-*.csv --out var/review/p1-results
"""

from __future__ import annotations

import argparse
import functools
import logging

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "review", help="expert rubric: export blinded review packets, import ratings"
    )
    rs = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    e = rs.add_parser(
        "export", help="blinded, shuffled packet (CSV + offline HTML) and a separate key"
    )
    add_config_args(e)
    e.add_argument("--drafts", help="drafts table dir (default: paths.drafts)")
    e.add_argument("--data", help="reports table dir (default: paths.table)")
    e.add_argument("--split", default="test")
    e.add_argument(
        "-k", type=int, default=20, help="reports to sample (each shown once per system)"
    )
    e.add_argument(
        "--seed", type=int, default=None, help="sampling/shuffle seed (default: eval.seed)"
    )
    e.add_argument("--baselines", default="none", help="extra systems: constant,nn,zero-shot")
    e.add_argument(
        "--run-id", action="append", default=[], help="only drafts of this run (repeatable)"
    )
    e.add_argument("--out", required=True, help="packet dir to send to raters")
    e.add_argument(
        "--key", help="unblinding key file (default: <out>.key.json, outside the packet)"
    )
    e.set_defaults(func=cmd_review_export)
    i = rs.add_parser("import", help="unblind raters' files: mean/SD per metric and system, kappa")
    i.add_argument("--key", required=True, help="the packet's key file")
    i.add_argument("files", nargs="+", help="ratings CSV/JSON files, one or more per rater")
    i.add_argument("--out", required=True, help="results dir")
    i.set_defaults(func=cmd_review_import)


def baselines(text: str | None) -> list[str] | None:
    """A --baselines comma list ('none' and blanks dropped); None when not given."""
    if text is None:
        return None
    return [b.strip() for b in text.split(",") if b.strip() and b.strip() != "none"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from radgpt.evaluation.run import run_evaluate

    paths = {"paths.drafts": args.drafts, "paths.table": args.data}
    cfg = config(args, {**paths, "eval.baselines": baselines(args.baselines)})
    try:
        m = run_evaluate(
            cfg,
            split=args.split,
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


def _guard(fn):
    """A review handler whose ValueError (bad packet, bad ratings) is a clear message and exit 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ValueError as e:
            logging.getLogger("radgpt.evaluation.review").error("%s", e)
            return 2

    return run


@_guard
def cmd_review_export(args: argparse.Namespace) -> int:
    from radgpt.evaluation.review import run_export

    paths = {"paths.drafts": args.drafts, "paths.table": args.data}
    cfg = config(
        args, {**paths, "eval.seed": args.seed, "eval.baselines": baselines(args.baselines)}
    )
    r = run_export(cfg, args.split, args.k, args.out, args.key, args.run_id or None)
    print(
        f"packet {r['packet_id']}: {r['packet_dir']}/packet.html, packet.csv; key {r['key_path']}"
    )
    return 0


@_guard
def cmd_review_import(args: argparse.Namespace) -> int:
    from radgpt.evaluation.review import METRICS, run_import

    s = run_import(args.key, args.files, args.out)
    for m in METRICS:
        kap = s["kappa"][m]["mean"]
        print(f"{m:>18}: kappa {'n/a' if kap is None else f'{kap:.3f}'}  " + "  ".join(
            f"{sy} {v[m]['mean']:.2f}" for sy, v in s["systems"].items() if v[m]["mean"] is not None))  # fmt: skip
    return 0
