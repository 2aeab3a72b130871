"""A local Ray's training log carries the run's lines, not a library's warning twice a second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

TRAIN = """
import time
from radgpt.config import load_config
from radgpt.runtime import setup_logging
from radgpt.cluster import init_ray

setup_logging("INFO")
init_ray(load_config(None, env={}))  # a local Ray as every command starts it: no dashboard
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

def loop(c):
    time.sleep(8)  # the cleaner polls the state API once a second meanwhile
    print("LOOP DONE", flush=True)

TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
             run_config=RunConfig(storage_path=%r, name="quiet")).fit()
print("FIT DONE", flush=True)
"""


@pytest.mark.slow  # a Ray start and a Ray Train run: ~45 s
def test_ray_train_on_a_local_ray_without_dashboard_logs_no_state_api_warnings(tmp_path):
    """Ray Train's placement-group cleaner asks the state API (the dashboard's) once a second
    whether its controller lives and warns each time it cannot: 900 lines in an 8-minute run.
    radgpt.cluster.quiet_ray_worker (a worker setup hook of the local Ray) drops them."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN % str(tmp_path / "results"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "LOOP DONE" in log and "FIT DONE" in log, log[-3000:]
    assert "Failed to query Ray Train Controller" not in log, log[-3000:]
