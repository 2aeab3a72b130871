"""conf/cluster.yaml: loads with radgpt.config, describes a real cluster, documents every key.

.venv/bin/pytest tests/test_cluster_conf.py -q
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radgpt.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "conf" / "cluster.yaml"
LOCAL_K8S = REPO / "k8s" / "overlays" / "local" / "cluster.yaml"
KEY = re.compile(r"^(\s*)([\w.\-]+):")


def undocumented(text: str) -> list[str]:
    """Keys with neither a trailing comment nor a comment line right above (or a commented parent
    block that lists them as its children: a key line inside a `#`-introduced block counts)."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = KEY.match(line)
        if not m:
            continue
        if " #" in line or line.lstrip().startswith("#"):
            continue
        prev = lines[i - 1].strip() if i else ""
        if prev.startswith("#"):
            continue
        out.append(f"line {i + 1}: {m.group(2)}")
    return out


def test_cluster_conf_loads_and_describes_a_cluster():
    cfg = load_config(CLUSTER, env={})
    assert isinstance(cfg, Config)
    # Spark on Kubernetes (or YARN), never a local master
    assert cfg.spark.master.startswith(("k8s://", "yarn"))
    if cfg.spark.master.startswith("k8s://"):
        for k in ("spark.kubernetes.namespace", "spark.kubernetes.container.image",
                  "spark.kubernetes.authenticate.driver.serviceAccountName"):  # fmt: skip
            assert cfg.spark.conf.get(k), k
    # a Ray cluster address (Ray client or job API), not a local Ray
    assert cfg.ray.address and cfg.ray.address.startswith(("ray://", "http://", "auto"))
    assert cfg.ray.num_cpus is None
    # a 7B base model under the models dir, loaded in a GPU dtype
    base = cfg.model_path(cfg.model.base)
    assert "7b" in base.name.lower() and base.is_absolute(), base
    assert base.parent == cfg.path("models")
    assert cfg.model.dtype in ("bfloat16", "float16")
    # GPU actors for training and drafting
    assert cfg.train.use_gpu and cfg.train.num_workers >= 2
    assert cfg.draft.gpus_per_actor >= 1 and cfg.draft.num_actors >= 1
    assert cfg.train.grad_accum * cfg.train.micro_batch * cfg.train.num_workers == 128
    # storage on a shared filesystem: every path under one absolute root
    root = Path(cfg.paths.root)
    assert root.is_absolute() and not str(root).startswith(("/tmp", "/home"))
    for name in ("table", "drafts", "fhir", "runs", "models", "checkpoints"):
        assert cfg.path(name).is_relative_to(root), name
    assert all(p.startswith("{root}") or p.startswith(str(root)) for p in cfg.ingest.inputs)


def test_every_key_is_documented():
    text = CLUSTER.read_text()
    assert undocumented(text) == []
    # the checker itself: a bare key is caught, a commented one is not
    assert undocumented("a:\n  b: 1\n") == ["line 1: a", "line 2: b"]
    assert undocumented("# the a section\na:\n  b: 1  # units\n") == []


def test_local_overlay_conf_loads():
    cfg = load_config(LOCAL_K8S, env={})
    assert not cfg.train.use_gpu and cfg.draft.gpus_per_actor == 0
    assert cfg.model.base == "{models}/smollm2-135m-instruct"  # embedded in the image
    assert cfg.paths.root == load_config(CLUSTER, env={}).paths.root


def test_pod_env_overrides_reach_the_config():
    """The RayJob points the trainer at its own cluster with RADGPT__RAY__ADDRESS=auto."""
    cfg = load_config(CLUSTER, env={"RADGPT__RAY__ADDRESS": "auto"})
    assert cfg.ray.address == "auto"
    assert load_config(CLUSTER, env={}).ray.address.startswith("ray://")


def test_a_bad_key_names_itself(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CLUSTER.read_text().replace("  num_actors: 2", "  num_actor: 2"))
    with pytest.raises(ConfigError, match=r"draft\.num_actor"):
        load_config(bad, env={})
