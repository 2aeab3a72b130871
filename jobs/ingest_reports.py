r"""Spark entrypoint of the ingest, for spark-submit (same code and options as `radgpt ingest`).

    spark-submit --master local[2] jobs/ingest_reports.py --config conf/local.yaml var/sample
    spark-submit --master yarn --deploy-mode client jobs/ingest_reports.py \
        --config conf/cluster.yaml --split-file /data/mimic/mimic-cxr-2.0.0-split.csv.gz /data/mimic

The radgpt package and its data contract (schemas/, or RADGPT_SCHEMAS) must be on every executor:
install them in the image (Dockerfile), as k8s/ does. spark-submit starts the driver with
PYSPARK_DRIVER_PYTHON / PYSPARK_PYTHON, else the `python3` on PATH: with a virtualenv, put it first
on PATH (`PATH=$PWD/.venv/bin:$PATH spark-submit ...`) or set PYSPARK_PYTHON=.venv/bin/python.
Settings given to spark-submit (--master, --conf, --name, the operator's) win over the config
file's `spark` section. `--conf-file` is the old name of `--config` and still works.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from radgpt.cli import add_config_args, config
    from radgpt.cli.ingest import add_arguments, flags, print_summary
    from radgpt.config import ConfigError
    from radgpt.ingest.run import run_ingest
    from radgpt.runtime import setup_logging
    from radgpt.table import TableBusy

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(p, "--config", "--conf-file")  # --conf-file: the name this job had first
    add_arguments(p)
    args = p.parse_args(argv)
    setup_logging()
    try:
        manifest = run_ingest(config(args, flags(args)))
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TableBusy as e:  # another ingest writes this table (the message names it)
        print(f"error: {e}", file=sys.stderr)
        return 75
    print_summary(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
