"""The `radgpt` command line.

    radgpt --help
    radgpt sample --out var/sample
    radgpt ingest --config conf/local.yaml var/sample/*
    radgpt nightly --config conf/local.yaml

Each concern registers its own subcommands through `add_commands(sub)` in its module; modules keep
heavy imports (torch, ray, pyspark) inside functions so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Never reach a model hub: models are local directories (see radgpt.model.base).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# modules that register subcommands, in --help order
COMMAND_MODULES = [
    "radgpt.sample.write",
    "radgpt.ingest.run",
    "radgpt.model.base",
    "radgpt.train",
    "radgpt.draft.run",
    "radgpt.writeback.fhir",
    "radgpt.nightly",
    "radgpt.evaluation.stats",
    "radgpt.draft.serve",
    "radgpt.evaluation",
    "radgpt.evaluation.review",
]

log = logging.getLogger("radgpt")


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config and --set, shared by every command that reads configuration."""
    p.add_argument(
        "--config",
        default=os.environ.get("RADGPT_CONFIG"),
        help="YAML config file (default: $RADGPT_CONFIG, else built-in defaults = conf/local.yaml values)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=1e-4 (repeatable; beats env RADGPT__SECTION__KEY)",
    )


def config_from_args(args: argparse.Namespace, **flags):
    """Config from --config/--set plus command flags given as section__key=value (None = not given).

    Precedence: YAML < env RADGPT__* < --set < dedicated flags.
    """
    from radgpt.config import load_config

    pairs = [(k.replace("__", "."), v) for k, v in flags.items() if v is not None]
    return load_config(getattr(args, "config", None), list(getattr(args, "set", []) or []) + pairs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radgpt",
        description="Draft radiology impressions from findings, locally: ingest, train, draft, write back, evaluate.",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        help="DEBUG|INFO|WARNING (report text is never logged at INFO)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from radgpt.config import ConfigError
    from radgpt.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        rc = args.func(args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    except FileNotFoundError as e:
        log.error("%s", e)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
