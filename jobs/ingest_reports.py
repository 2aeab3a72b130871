"""Spark entrypoint of the ingest, for spark-submit (same code as `radgpt ingest`).

    spark-submit --master local[2] jobs/ingest_reports.py --conf-file conf/local.yaml var/sample
    spark-submit --master yarn --deploy-mode client jobs/ingest_reports.py \
        --conf-file conf/cluster.yaml --split-file /data/mimic/mimic-cxr-2.0.0-split.csv.gz /data/mimic

The radgpt package must be importable on the executors: install it in the image (Dockerfile) or
ship it with `--py-files dist/radgpt.zip`. --master/--conf given to spark-submit win over the
config file's `spark` section.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from radgpt.cli import config
    from radgpt.cli.ingest import add_arguments, flags, print_summary
    from radgpt.config import ConfigError
    from radgpt.ingest.run import run_ingest
    from radgpt.runtime import setup_logging

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(  # dest config: what radgpt.cli.config reads
        "--conf-file",
        dest="config",
        metavar="CONF_FILE",
        help="radgpt YAML config (conf/cluster.yaml on a cluster)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    add_arguments(p)
    args = p.parse_args(argv)
    setup_logging()
    try:
        manifest = run_ingest(config(args, flags(args)))
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
