"""`radgpt registry`: the MLflow model registry of adapters (radgpt.model.registry).

radgpt registry list                               # versions, aliases, gate decisions
radgpt registry register models/iu-default --alias champion   # seed it with an adapter dir
radgpt registry alias champion 3                   # move an alias by hand (e.g. roll back)
"""

from __future__ import annotations

import argparse
import json

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="model registry: list versions, register, move aliases")
    rs = p.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    actions = [
        ("list", "registered adapter versions with their aliases", cmd_registry_list,
         [("--json", {"action": "store_true", "help": "print JSON"})]),
        ("register", "log an adapter dir (its record) and register a version",
         cmd_registry_register,
         [("adapter", {"help": "adapter dir with adapter_record.json"}),
          ("--alias", {"help": "give the new version this alias (e.g. champion)"})]),
        ("alias", "point an alias at a version", cmd_registry_alias,
         [("alias", {"help": "champion | challenger | any name"}), ("version", {})]),
    ]  # fmt: skip
    for name, help, func, opts in actions:
        a = rs.add_parser(name, help=help)
        add_config_args(a)
        for flag, kw in opts:
            a.add_argument(flag, **kw)
        a.set_defaults(func=func)


def cmd_registry_list(args: argparse.Namespace) -> int:
    from radgpt.model import registry

    cfg = config(args)
    vs = registry.versions(cfg)
    if args.json:
        print(json.dumps(vs, indent=2, default=str))
        return 0
    print(f"{cfg.registry.model} in {registry.uri(cfg)}: {len(vs)} versions")
    for v in vs:
        gate = v["tags"].get("gate.decision", "-")
        print(f"  v{v['version']:<4} {v['adapter_id'] or '?':<24} aliases {','.join(v['aliases']) or '-':<22}"
              f" gate {gate}")  # fmt: skip
    return 0


def cmd_registry_register(args: argparse.Namespace) -> int:
    import os

    from radgpt.model import registry
    from radgpt.model.base import read_adapter_record

    cfg = config(args)
    d = os.path.abspath(args.adapter)
    cfg.registry.register_versions = True
    out = registry.log_training(cfg, read_adapter_record(d), d, alias=args.alias)
    print(json.dumps(out, indent=2))
    return 0


def cmd_registry_alias(args: argparse.Namespace) -> int:
    from radgpt.model import registry

    cfg = config(args)
    registry.set_alias(cfg, args.alias, args.version)
    print(f"{cfg.registry.model}: {args.alias} -> version {args.version}")
    return 0
