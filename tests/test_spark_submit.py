"""The ingest Spark entrypoint under the installed pyspark's real `spark-submit`, as on a cluster.

    .venv/bin/pytest tests/test_spark_submit.py -q

It runs jobs/ingest_reports.py with the cluster config itself (conf/cluster.yaml: master
k8s://...), so the test also proves that spark-submit's `--master local[2]` wins over the config's
Spark master, as it must when the spark-operator or YARN submits the job.
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
N = 20  # reports per sample format


@pytest.mark.slow
def test_spark_submit_ingest_local(tmp_path):
    from radgpt import table
    from radgpt.config import load_config
    from radgpt.ingest.run import quarantine_root
    from radgpt.ingest.sources import FORMATS
    from radgpt.sample.write import write_sample

    if not SPARK_SUBMIT.is_file():
        pytest.skip(f"{SPARK_SUBMIT} missing: pyspark not installed in this environment")
    sample = tmp_path / "sample"
    ms = write_sample(sample, n=N, seed=5, bad=True)
    root = tmp_path / "radgpt"
    # small partition counts for 2 cores; spark.master stays k8s://... from the file
    sets = [
        f"paths.root={root}",
        "spark.partitions=4",
        "spark.conf={spark.sql.shuffle.partitions: '4'}",
    ]
    argv = [str(SPARK_SUBMIT), "--master", "local[2]", "--driver-memory", "1g",
            "--conf", "spark.ui.enabled=false",
            str(REPO / "jobs" / "ingest_reports.py"),
            "--config", str(REPO / "conf" / "cluster.yaml"),
            *[a for s in sets for a in ("--set", s)], str(sample)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "ingest ingest-" in out.stdout  # the summary line of jobs/ingest_reports.py

    cfg = load_config(REPO / "conf" / "cluster.yaml", sets, env={})
    (m,) = table.manifests(cfg.path("table"))  # exactly one committed run
    rows = table.read_reports(cfg)
    q = table.read(quarantine_root(cfg), "quarantine")
    tot = m["counts"]["totals"]
    assert tot["new"] == rows.num_rows > 0 and tot["quarantined"] == q.num_rows
    assert tot["eligible"] + tot["excluded"] == tot["new"]
    assert set(rows.column("source").to_pylist()) == set(FORMATS)
    # every generated report is in the table or, as a duplicate id, in the quarantine
    assert tot["new"] + tot["duplicate_ids"] == ms["totals"]["reports"]
    assert tot["quarantined"] >= ms["totals"]["bad"] > 0  # bad inputs quarantined, never dropped
    # the run manifest is also under paths.runs, as monitoring reads it
    assert (
        json.loads((cfg.path("runs") / f"{m['run_id']}.json").read_text())["run_id"] == m["run_id"]
    )
