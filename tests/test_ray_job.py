"""Training as a Ray job against a Ray head started by the test, exactly as on the cluster:

    ray job submit --address http://127.0.0.1:<dashboard> --working-dir . -- \
        python training/train_lora.py --config CONF --max-steps 1 ...

    .venv/bin/pytest tests/test_ray_job.py -q

The head is `ray start --head --block` in its own process group with its own ports and temp dir,
stopped by signalling that group: never `ray stop`, which would also kill other Ray instances
running on the same machine. Every subprocess has a timeout.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_head(env: dict, temp_dir: str) -> tuple[subprocess.Popen, str]:
    """Start the head; return once its dashboard answers and its job agent listens.

    Jobs go through the head node's dashboard agent; the dashboard gives up on it after 10 s
    ("No available agent"), and on a loaded 2-core CI machine the agent has come up later than that.
    """
    gcs, dash, client, agent, metrics, renv = free_ports(6)
    argv = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2",
            "--node-ip-address", "127.0.0.1", "--port", str(gcs),
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--ray-client-server-port", str(client),
            "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics),
            "--runtime-env-agent-port", str(renv), "--temp-dir", temp_dir,
            "--disable-usage-stats"]  # fmt: skip
    log = open(Path(temp_dir) / "head.log", "w")  # noqa: SIM115 - closed with the process
    head = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if head.poll() is not None:
                raise RuntimeError(f"ray start exited {head.returncode}: see {temp_dir}/head.log")
            try:  # any HTTP answer means the job API is up (401: Ray's token auth, the CLI has it)
                urllib.request.urlopen(f"{url}/api/version", timeout=2).close()
            except urllib.error.HTTPError:
                pass
            except OSError:
                time.sleep(1)
                continue
            if port_open(agent):  # the dashboard agent's HTTP port, which runs the jobs
                return head, url
            time.sleep(1)
        raise TimeoutError("Ray dashboard and job agent did not come up in 120 s")
    except BaseException:
        stop_head(head)
        raise


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` (it stops its raylet, GCS, dashboard), then the group."""
    if head.poll() is None:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(head.pid, signal.SIGKILL)  # leftovers of this head only: its own process group
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_train_lora_as_ray_job(tmp_path, tiny_model_dir, spark):
    from radgpt.config import load_config
    from radgpt.ingest.run import run_ingest
    from radgpt.model.base import read_adapter_record
    from radgpt.sample.write import write_sample

    script = REPO / "training" / "train_lora.py"
    assert script.is_file(), "training/train_lora.py (training engineer) has not landed yet"
    conf = {
        "paths": {"root": str(tmp_path / "radgpt")},
        "ray": {"address": None},  # inside the job: RAY_ADDRESS, set by the job supervisor
        "model": {"base": str(tiny_model_dir), "dtype": "float32"},
        "train": {"effective_batch": 2, "micro_batch": 2, "cutoff_len": 128, "num_workers": 1,
                  "cpus_per_worker": 1, "use_gpu": False, "checkpoint_every": 1},
    }  # fmt: skip
    conf_file = tmp_path / "job.yaml"
    conf_file.write_text(yaml.safe_dump(conf))
    cfg = load_config(conf_file, {"ingest.inputs": [str(tmp_path / "sample")]}, env={})
    write_sample(tmp_path / "sample", n=20, seed=9, bad=False)
    assert run_ingest(cfg, spark=spark)["counts"]["totals"]["eligible"] > 0
    out = tmp_path / "adapter"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           # Ray's token auth with a token of this test only (head and CLI read the env)
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    # short: Ray's unix socket paths under the temp dir must stay below 107 characters
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    head = None
    try:
        head, url = start_head(env, temp_dir)
        sid = f"radgpt-test-{os.getpid()}"
        sub = [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", ".",
               "--submission-id", sid, "--",
               "python", "training/train_lora.py", "--config", str(conf_file),
               "--max-steps", "1", "--out", str(out)]  # fmt: skip
        for _ in range(6):  # Ray asks to retry when the agent has not registered yet
            run = subprocess.run(
                sub, cwd=REPO, env=env, capture_output=True, text=True, timeout=540
            )
            log = run.stdout + run.stderr
            if run.returncode == 0 or "No available agent to submit job" not in log:
                break
            time.sleep(10)
        assert run.returncode == 0 and f"Job '{sid}' succeeded" in log, log[-4000:]
    finally:
        if head is not None:
            stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
    rec = read_adapter_record(out)  # the adapter the job wrote to the shared path
    assert (out / "adapter_config.json").is_file()
    assert rec["adapter_id"] and rec["template"] == cfg.model.template
