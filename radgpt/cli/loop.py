"""`radgpt outcomes`, `radgpt promote`, `radgpt retrain`: closing the loop (radgpt.loop).

radgpt outcomes --config conf/local.yaml          # link drafts to the final reports that arrived
radgpt promote [--challenger REF] [--champion REF] [--reports N] [--out DIR] [--dry-run]
radgpt retrain [--since X] [--init-adapter Y] [--max-steps N] [--out DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import config, documented


def add(sub: argparse._SubParsersAction) -> None:
    p = documented(sub, "outcomes", "link drafts to their final reports: accepted / edited / "
                   "replaced (outcomes table)", "radgpt.loop.outcomes")  # fmt: skip
    p.add_argument("--drafts", help="drafts table dir (default: paths.drafts)")
    p.add_argument("--data", help="reports table dir (default: paths.table)")
    p.set_defaults(func=cmd_outcomes)

    p = documented(sub, "promote", "gate the registry's challenger against its champion on "
                   "held-out reports; promote only if not worse", "radgpt.loop.promote")  # fmt: skip
    p.add_argument("--challenger", default="challenger", help="registry alias or version")
    p.add_argument("--champion", default="champion", help="registry alias or version")
    p.add_argument("--reports", type=int, help="at most N held-out reports (gate.reports)")
    p.add_argument("--out", help="decision + report dir (default: paths.runs/<gate run id>)")
    p.add_argument("--dry-run", action="store_true", help="decide and record, move no alias")
    p.set_defaults(func=cmd_promote)

    p = documented(sub, "retrain", "train a challenger on the reports signed since the "
                   "champion, from the champion, then gate it", "radgpt.loop.retrain")  # fmt: skip
    p.add_argument("--data", help="reports table dir (default: paths.table)")
    p.add_argument("--since", help="train.since (default: champion)")
    p.add_argument("--init-adapter", help="train.init_adapter (default: registry:champion)")
    p.add_argument("--max-steps", type=int, help="train.max_steps")
    p.add_argument("--reports", type=int, help="gate.reports")
    p.add_argument("--out", help="adapter dir (default: <paths.models>/adapters/<run_id>)")
    p.add_argument("--dry-run", action="store_true", help="gate without moving the alias")
    p.set_defaults(func=cmd_retrain)


def cmd_outcomes(args: argparse.Namespace) -> int:
    from radgpt.loop.outcomes import run_outcomes

    cfg = config(args, {"paths.drafts": args.drafts, "paths.table": args.data})
    print(json.dumps(run_outcomes(cfg), indent=2, default=str))
    return 0


def _brief(d: dict) -> str:
    lines = [f"gate {d['gate_run_id']}: {d['decision'].upper()} ({d['reason']})"]
    for r in d.get("criteria", []):
        ok = "pass" if r["pass"] else "FAIL"
        lines.append(f"  {ok}  {r['criterion']}: challenger {r['challenger']}  champion "
                     f"{r['champion']}  ({r['rule']})")  # fmt: skip
    if d.get("out"):
        lines.append(f"  report: {d['out']}/promote.html")
    return "\n".join(lines)


def cmd_promote(args: argparse.Namespace) -> int:
    from radgpt.loop.promote import run_promote

    cfg = config(args, {"gate.reports": args.reports})
    d = run_promote(cfg, args.challenger, args.champion, out=args.out, dry_run=args.dry_run)
    print(_brief(d))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from radgpt.cli.train import train_flags
    from radgpt.loop.retrain import run_retrain

    cfg = config(args, {**train_flags(args), "gate.reports": args.reports})
    res = run_retrain(cfg, out=args.out, dry_run=args.dry_run)
    print(json.dumps(res["train"], indent=2, default=str))
    print(_brief(res["gate"]))
    return 0
