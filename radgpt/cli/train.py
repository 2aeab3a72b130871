"""`radgpt train`: LoRA instruction tuning on Ray Train (radgpt.train.run.run_train).

radgpt train [--config FILE] [--data DIR] [--base-model DIR] [--out DIR] [--resume] [--max-steps N]
python training/train_lora.py ...                      # same options (add_arguments, cmd_train)
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import add_config_args, config


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `radgpt train` and training/train_lora.py (after --config/--set)."""
    p.add_argument(
        "--data", help="canonical reports table written by `radgpt ingest` (default: paths.table)"
    )
    p.add_argument(
        "--base-model",
        help="local HF model dir (default: model.base, imported if it is the default)",
    )
    p.add_argument("--out", help="adapter output dir (default: <paths.models>/adapters/<run_id>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_ID",
        help="continue the latest (or the named) run from its last checkpoint, same data order",
    )
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps (train.max_steps)")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="LoRA instruction tuning of a local base model on Ray Train")
    add_config_args(p)
    add_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from radgpt.train.run import run_train

    cfg = config(
        args,
        {
            "paths.table": args.data,
            "model.base": args.base_model,
            "train.max_steps": args.max_steps,
        },
    )
    rec = run_train(cfg, out=args.out, resume=args.resume)
    summary = {k: rec[k] for k in ("adapter_id", "task", "template", "retrieval_k")}
    summary.update(out=rec["run"]["run_dir"], metrics=rec["metrics"])
    print(json.dumps({"adapter_dir": rec.get("adapter_dir"), **summary}, indent=2, default=str))
    return 0
