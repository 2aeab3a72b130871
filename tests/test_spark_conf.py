"""radgpt.cluster.spark_session: what spark-submit is given wins over the config file's `spark`.

    .venv/bin/pytest tests/test_spark_conf.py -q            # fast: PYSPARK_SUBMIT_ARGS
    .venv/bin/pytest tests/test_spark_conf.py -q -m slow    # the real spark-submit

The spark-operator (and YARN, and a user) start the ingest with `spark-submit --conf ...
--name ... --master ...`; the nightly pod passes its --conf through PYSPARK_SUBMIT_ARGS. Each case
runs in a fresh Python process: the JVM's settings are fixed when it starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
# the session's settings as the job sees them
PROBE = """
import json, sys
from radgpt.config import load_config
from radgpt.cluster import spark_session, stop_spark
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]), env={})
spark = spark_session(cfg)
sc = spark.sparkContext
print("PROBE " + json.dumps({
    "master": sc.master, "app": sc.appName,
    "shuffle": spark.conf.get("spark.sql.shuffle.partitions"),
    "adaptive": spark.conf.get("spark.sql.adaptive.enabled"),
    "timezone": spark.conf.get("spark.sql.session.timeZone"),
}))
stop_spark(spark)
"""
CONFIG = {  # the config file's choices, each probed below
    "spark.master": "local[2]",
    "spark.app_name": "from-config",
    "spark.conf": {"spark.sql.shuffle.partitions": "64", "spark.sql.adaptive.enabled": "false"},
}


def probe(argv: list[str], tmp_path: Path, **env: str) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    argv = [*argv, str(script), str(REPO / "conf" / "local.yaml"), json.dumps(CONFIG)]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable, **env}
    full_env.pop("PYSPARK_GATEWAY_PORT", None)
    out = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=full_env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


def test_pyspark_submit_args_win_over_the_config(tmp_path):
    """PYSPARK_SUBMIT_ARGS (the nightly pod's way to pass --conf) beats cfg.spark, key by key."""
    got = probe(
        [sys.executable],
        tmp_path,
        PYSPARK_SUBMIT_ARGS="--master local[1] --name from-submit --conf spark.ui.enabled=false "
        "--conf=spark.sql.shuffle.partitions=3 pyspark-shell",
    )
    assert (got["master"], got["app"], got["shuffle"]) == ("local[1]", "from-submit", "3"), got
    # what spark-submit left alone still comes from the config file, then the defaults
    assert (got["adaptive"], got["timezone"]) == ("false", "UTC"), got


@pytest.mark.slow
def test_spark_submit_settings_win_over_the_config(tmp_path):
    if not SPARK_SUBMIT.is_file():
        pytest.skip(f"{SPARK_SUBMIT} missing: pyspark not installed in this environment")
    submit = [str(SPARK_SUBMIT), "--conf", "spark.ui.enabled=false", "--driver-memory", "1g"]
    got = probe(
        [*submit, "--master", "local[1]", "--name", "from-submit",
         "--conf", "spark.sql.shuffle.partitions=3"],
        tmp_path,
    )  # fmt: skip
    assert (got["master"], got["app"], got["shuffle"]) == ("local[1]", "from-submit", "3"), got
    assert (got["adaptive"], got["timezone"]) == ("false", "UTC"), got
    # without --name spark-submit names the application after the script: the config's name wins;
    # without --conf the config's value applies; without --master spark-submit's local[*] applies
    got = probe(submit, tmp_path)
    assert (got["master"], got["app"], got["shuffle"]) == ("local[*]", "from-config", "64"), got
