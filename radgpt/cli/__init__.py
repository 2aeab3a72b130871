"""The `radgpt` command line: the only place that parses arguments.

    radgpt --help
    radgpt sample --out var/sample
    radgpt ingest --config conf/local.yaml var/sample/*
    radgpt nightly --config conf/local.yaml

One module per command group (sample, ingest, models, train, draft, writeback, nightly, stats,
serve, evaluate), each with `add(sub)` registering its subcommands and one handler
`cmd_<command>(args) -> int` per subcommand. A handler turns --config/--set and its own flags into
a Config with `config(args, {"section.key": flag})` and calls the domain's run function with that
Config. Handlers import torch, ray, pyspark, polars ... inside, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radgpt.config import Config

# Never reach a model hub: models are local directories (see radgpt.model.base).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

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


def config(args: argparse.Namespace, flags: dict[str, Any] | None = None) -> Config:
    """The Config of a command: --config and --set of args, then its dedicated flags given as
    {"section.key": value} (a None value = flag not given).

    Precedence: YAML < env RADGPT__* < --set < dedicated flags.
    """
    from radgpt.config import load_config

    pairs = [(k, v) for k, v in (flags or {}).items() if v is not None]
    return load_config(getattr(args, "config", None), list(getattr(args, "set", []) or []) + pairs)


def documented(
    sub: argparse._SubParsersAction, name: str, help: str, module: str
) -> argparse.ArgumentParser:
    """A subcommand with --config/--set whose --help description is the docstring of `module`, read
    without importing the module (it loads when the command runs)."""
    import ast
    import importlib.util
    from pathlib import Path

    text = Path(importlib.util.find_spec(module).origin).read_text()
    p = sub.add_parser(
        name,
        help=help,
        description=ast.get_docstring(ast.parse(text), clean=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    from radgpt.cli import (
        draft,
        evaluate,
        ingest,
        models,
        nightly,
        sample,
        serve,
        stats,
        train,
        writeback,
    )

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
    # in --help order
    for group in (sample, ingest, models, train, draft, writeback, nightly, stats, serve, evaluate):
        group.add(sub)
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
