"""The `radgpt` command line: the only place that parses arguments.

    radgpt --help
    radgpt sample --out var/sample
    radgpt ingest --config conf/local.yaml var/sample/*
    radgpt nightly --config conf/local.yaml

One module per command group (sample, ingest, models, train, draft, writeback, nightly, stats,
serve, evaluate, loop: outcomes/promote/retrain, registry, settings: `radgpt config`), each with `add(sub)` registering its subcommands and one handler
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
# a step reports its own progress, once (radgpt.draft.progress): no "Loading weights" bars
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

log = logging.getLogger("radgpt")


def add_config_args(p: argparse.ArgumentParser, *names: str) -> None:
    """--config and --set, shared by every command that reads configuration (and by the
    spark-submit job, which also accepts its old name --conf-file: `names`)."""
    p.add_argument(
        *(names or ("--config",)),
        dest="config",
        default=os.environ.get("RADGPT_CONFIG"),
        help="YAML config file (default: $RADGPT_CONFIG, else the built-in defaults: the embedded "
        "default, the same values as conf/local.yaml)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=1e-4 (repeatable; beats env RADGPT__SECTION__KEY)",
    )


# config keys holding paths: a path given as a command-line flag is relative to the working
# directory (what a shell user means), unlike a relative path in a config (radgpt.config.HOME)
PATH_KEYS = {"paths.root", "paths.table", "paths.drafts", "paths.models", "model.base",
             "model.adapter", "ingest.inputs", "ingest.split_file", "train.init_adapter",
             "paths.registry", "paths.outcomes"}  # fmt: skip


def _cwd_path(v: Any) -> Any:
    if isinstance(v, list):
        return [_cwd_path(x) for x in v]
    if isinstance(v, str) and v.startswith("registry:"):  # a model registry version, not a path
        return v
    return os.path.abspath(os.path.expanduser(v)) if isinstance(v, str) else v


def config(args: argparse.Namespace, flags: dict[str, Any] | None = None) -> Config:
    """The Config of a command: --config and --set of args, then its dedicated flags given as
    {"section.key": value} (a None value = flag not given; path flags taken from the working dir).

    Precedence: YAML < env RADGPT__* < --set < dedicated flags.
    """
    from radgpt.config import load_config

    pairs = [
        (k, _cwd_path(v) if k in PATH_KEYS else v)
        for k, v in (flags or {}).items()
        if v is not None
    ]
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
        loop,
        models,
        nightly,
        registry,
        sample,
        serve,
        settings,
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
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG|INFO|WARNING|ERROR, any case (report text is never logged at INFO)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # in --help order
    for group in (sample, ingest, models, train, draft, writeback, nightly, stats, serve, evaluate,
                  loop, registry, settings):  # fmt: skip
        group.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. SIGTERM and Ctrl-C end it cleanly: work files and staged rows are removed
    on the way out (`finally`), then the Spark JVM and the Ray this process started are stopped
    (radgpt.exits.stopping_sessions); exit codes 143 and 130. Another run holding a table's lock:
    exit code 75 (EX_TEMPFAIL) with a message naming it."""
    from radgpt.config import ConfigError
    from radgpt.exits import Terminated, exit_on_sigterm, stopping_sessions
    from radgpt.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from radgpt.table import TableBusy  # after --help (pyarrow)

    try:
        with exit_on_sigterm(), stopping_sessions():  # sessions stop first, still under the handler
            rc = args.func(args)
    except (ConfigError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2
    except TableBusy as e:
        log.error("%s", e)
        return 75
    except Terminated as e:
        log.error("stopped by SIGTERM: work files removed, Spark and Ray stopped")
        # all is cleaned up and stopped: the interpreter's own teardown (Ray's exit hook racing
        # Ray's threads) is skipped, so that the exit code is this one
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(e.code))
    except KeyboardInterrupt:
        log.error("interrupted: work files removed, Spark and Ray stopped")
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
