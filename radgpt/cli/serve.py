"""`radgpt serve`: the HTTP drafting service on Ray Serve (radgpt.draft.serve).

radgpt serve --config conf/local.yaml [--port 8000] [--host 127.0.0.1] [--adapter DIR]
"""

from __future__ import annotations

import argparse
import time

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP drafting service on Ray Serve (POST /v1/impressions)")
    add_config_args(p)
    p.add_argument("--port", type=int, help="port (default: serve.port)")
    p.add_argument("--host", help="bind address (default: serve.host = 127.0.0.1)")
    p.add_argument("--adapter", help="PEFT adapter dir (default: model.adapter)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from radgpt.draft.serve import ROUTE, start

    cfg = config(
        args,
        {"serve.port": args.port, "serve.host": args.host, "model.adapter": args.adapter or None},
    )
    url = start(cfg)
    print(f"serving on {url}  (POST {ROUTE}, GET /healthz); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        from ray import serve

        serve.shutdown()
    return 0
