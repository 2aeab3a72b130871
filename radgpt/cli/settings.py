"""`radgpt config`: the configuration a command would run with, and what each key means.

    radgpt config show --config conf/local.yaml --set draft.n_best=2   # the resolved config (YAML)
    radgpt config keys draft train.lr                  # keys: value, default, type and help
    radgpt config keys --changed --config conf/prod.yaml   # only what differs from the defaults
    radgpt config docs > docs/config.md                # every key as Markdown tables

Values are resolved as every command resolves them: defaults < YAML < env RADGPT__SECTION__KEY
< --set. A bad key or value exits 2 with a message naming it.
"""

from __future__ import annotations

import argparse

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="print the resolved configuration, or every key with its default and help",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    show = what.add_parser("show", help="the resolved config as YAML (or --json)")
    add_config_args(show)
    show.add_argument("--json", action="store_true", help="JSON with its version stamp and hash")
    show.set_defaults(func=cmd_config_show)
    ks = what.add_parser("keys", help="each key: resolved value, default, type and help")
    add_config_args(ks)
    ks.add_argument("prefix", nargs="*", help="keys or sections to list, e.g. draft train.lr")
    ks.add_argument("--changed", action="store_true", help="only keys that differ from defaults")
    ks.set_defaults(func=cmd_config_keys)
    docs = what.add_parser("docs", help="every key as Markdown tables (docs/config.md)")
    docs.set_defaults(func=cmd_config_docs)


def cmd_config_show(args: argparse.Namespace) -> int:
    import json

    import yaml

    cfg = config(args)
    if args.json:
        print(json.dumps({"config": json.loads(cfg.to_json()), "hash": cfg.hash()}, indent=2))
    else:
        print(f"# config hash {cfg.hash()}")
        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    from radgpt.config import ConfigError
    from radgpt.config.keys import keys, listing, matches

    names = [k.name for k in keys()]
    for p in args.prefix:
        if not any(matches(n, p) for n in names):
            raise ConfigError(f"{p}: no such key or section (radgpt config keys lists them)")
    text = listing(config(args), args.prefix, args.changed)
    print(text or "(every key has its default)")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    from radgpt.config.keys import markdown

    print(markdown(), end="")
    return 0
