"""LoRA instruction tuning on Ray Train.

    radgpt train [--config FILE] [--data DIR] [--base-model DIR] [--out DIR] [--resume] [--max-steps N]
    python training/train_lora.py ...                      # same, as a plain script
    ray job submit --working-dir . -- python training/train_lora.py ...

Modules: data.py (table -> records -> batches), loop.py (the worker loop), run.py (the driver),
record.py (adapter_record.json).
"""

from __future__ import annotations

import argparse
import json


def add_train_args(p: argparse.ArgumentParser) -> None:
    from radgpt.cli import add_config_args

    add_config_args(p)
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


def cmd_train(args: argparse.Namespace) -> int:
    from radgpt.cli import config_from_args
    from radgpt.train.run import run_train

    cfg = config_from_args(args)
    rec = run_train(
        cfg,
        data_dir=args.data,
        base=args.base_model,
        out=args.out,
        resume=args.resume,
        max_steps=args.max_steps,
    )
    summary = {k: rec[k] for k in ("adapter_id", "task", "template", "retrieval_k")}
    summary.update(out=rec["run"]["run_dir"], metrics=rec["metrics"])
    print(json.dumps({"adapter_dir": rec.get("adapter_dir"), **summary}, indent=2, default=str))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="LoRA instruction tuning of a local base model on Ray Train")
    add_train_args(p)
    p.set_defaults(func=cmd_train)
