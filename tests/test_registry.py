"""The model registry on a real local MLflow file store: runs, versions, aliases, resolution.

.venv/bin/pytest tests/test_registry.py -q
"""

from __future__ import annotations

import json
import os

import pytest

from radgpt.config import load_config


def fake_adapter(d, adapter_id: str, steps: int = 3):
    """An adapter dir as `radgpt train` leaves it (record + weights file + step metrics)."""
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(b"not really weights")
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    metrics = d.parent / f"{adapter_id}-metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "epoch": 0, "loss": 3.0 / s, "lr": 1e-3,
                                           "tokens_per_s": 100.0 + s, "examples_per_s": 2.0,
                                           "val_loss": 2.5 if s == steps else None}) + "\n"
                               for s in range(1, steps + 1)))  # fmt: skip
    rec = {
        "version": 1, "adapter_id": adapter_id, "method": "lora", "base_sha256": "b" * 64,
        "template": "chat-v1", "dataset": {"sha256": "d" * 64, "rows": {"train": 8}},
        "config": json.loads(load_config(None, env={}).to_json()),
        "run": {"run_id": f"train-{adapter_id}", "metrics": str(metrics),
                "started_at": "2026-01-02T03:04:05+00:00"},
        "metrics": {"steps": steps, "first_loss": 3.0, "final_loss": 3.0 / steps},
    }  # fmt: skip
    (d / "adapter_record.json").write_text(json.dumps(rec))
    return d


@pytest.fixture
def cfg(tmp_path):
    return load_config(None, {"paths.root": str(tmp_path / "var")}, env={})


def test_training_runs_versions_and_aliases(cfg, tmp_path):
    from mlflow import MlflowClient

    from radgpt.model import registry

    a = fake_adapter(tmp_path / "a", "lora-aaaa")
    got = registry.log_training(cfg, json.loads((a / "adapter_record.json").read_text()), a)
    assert got["version"] == "1" and got["alias"] == "challenger"
    assert got["uri"] == (tmp_path / "var" / "mlruns").as_uri()  # the file store, on disk
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["DO_NOT_TRACK"] == "true"
    c = MlflowClient(tracking_uri=got["uri"], registry_uri=got["uri"])
    run = c.get_run(got["run_id"])
    assert run.data.params["train.lr"] == "0.0003" and run.data.params["lora.r"] == "8"
    assert json.loads(run.data.params["lora.target_modules"]) == ["q_proj", "v_proj"]
    assert run.data.tags["adapter_id"] == "lora-aaaa" and run.info.status == "FINISHED"
    losses = c.get_metric_history(got["run_id"], "loss")
    assert [m.step for m in losses] == [1, 2, 3] and losses[-1].value == 1.0
    assert c.get_metric_history(got["run_id"], "tokens_per_s")[0].value == 101.0
    assert [m.step for m in c.get_metric_history(got["run_id"], "val_loss")] == [3]
    arts = {f.path for f in c.list_artifacts(got["run_id"])}
    assert arts == {"adapter_record.json", "adapter"}
    assert {f.path for f in c.list_artifacts(got["run_id"], "adapter")} >= {
        "adapter/adapter_model.safetensors", "adapter/adapter_record.json"
    }  # fmt: skip

    assert registry.lookup(cfg, "champion") is None  # no champion yet: nothing, no error
    with pytest.raises(FileNotFoundError, match="radgpt registry register"):
        registry.resolve(cfg, "registry:champion")
    ch = registry.resolve(cfg, "registry:challenger")
    assert (ch.version, ch.adapter_id, ch.uri) == ("1", "lora-aaaa", "models:/radgpt-impression/1")
    assert ch.dir.is_dir() and ch.dir.is_relative_to(tmp_path / "var" / "mlruns")  # in place

    b = fake_adapter(tmp_path / "b", "lora-bbbb")
    assert registry.log_training(cfg, json.loads((b / "adapter_record.json").read_text()), b)[
        "version"] == "2"  # fmt: skip
    registry.set_alias(cfg, "champion", "1")
    assert registry.resolve(cfg, "champion").adapter_id == "lora-aaaa"
    assert registry.resolve(cfg, "challenger").adapter_id == "lora-bbbb"
    assert registry.resolve(cfg, "2").alias is None
    vs = {v["version"]: v for v in registry.versions(cfg)}
    assert vs["1"]["aliases"] == ["champion"] and vs["2"]["aliases"] == ["challenger"]
    # a version whose files no longer match what was registered is refused
    (ch.dir / "adapter_record.json").write_text(json.dumps({"adapter_id": "lora-other"}))
    with pytest.raises(ValueError, match="registered as lora-aaaa"):
        registry.resolve(cfg, "champion")


def test_drafting_resolves_the_registry(cfg, tmp_path):
    from radgpt.draft.drafter import adapter_dir, adapter_source
    from radgpt.model import registry

    a = fake_adapter(tmp_path / "a", "lora-aaaa")
    path = fake_adapter(tmp_path / "p", "lora-path")
    cfg.model.adapter = str(path)
    assert adapter_source(cfg) == (path, None)  # a path: no registry version, draft ids unchanged
    cfg.registry.champion_drafts = True
    assert adapter_source(cfg) == (path, None)  # asked for the champion, but there is none
    rec = json.loads((a / "adapter_record.json").read_text())
    registry.log_training(cfg, rec, a, alias="champion")
    d, version = adapter_source(cfg)
    assert version == "models:/radgpt-impression/1" and (d / "adapter_record.json").is_file()
    cfg.registry.champion_drafts = False
    cfg.model.adapter = "registry:champion"
    assert adapter_source(cfg) == (d, version) and adapter_dir(cfg) == d
    assert adapter_source(cfg, "registry:1") == (d, version)
    cfg.model.adapter = "registry:challenger"  # log_training gave the alias champion only
    with pytest.raises(FileNotFoundError, match="has no radgpt-impression 'challenger'"):
        adapter_source(cfg)


def test_registry_commands(tmp_path, capsys):
    from radgpt.cli import main

    a = fake_adapter(tmp_path / "a", "lora-aaaa")
    root = ["--set", f"paths.root={tmp_path / 'var'}"]
    assert main(["registry", "register", str(a), "--alias", "champion", *root]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "1"
    b = fake_adapter(tmp_path / "b", "lora-bbbb")
    assert main(["registry", "register", str(b), *root]) == 0
    capsys.readouterr()
    assert main(["registry", "alias", "champion", "2", *root]) == 0
    assert main(["registry", "list", "--json", *root]) == 0
    out = capsys.readouterr().out
    vs = json.loads(out[out.index("[") :])
    assert [(v["version"], v["aliases"]) for v in vs] == [("1", []), ("2", ["champion"])]
    # a path flag keeps a registry reference as it is (not made absolute against the cwd)
    from radgpt.cli import _cwd_path

    assert _cwd_path("registry:champion") == "registry:champion"
