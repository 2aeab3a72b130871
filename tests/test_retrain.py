"""Retraining on the hospital's data: rows since a point in time, later report versions, starting
from an earlier adapter; and the promotion gate with a better and a deliberately worse challenger.

    .venv/bin/pytest tests/test_retrain.py -q            # the gate runs are @slow

Real components: Ray Data reads of a committed table, Ray Train with the tiny Llama, a local MLflow
file store, Ray Data drafting inside the gate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
import test_train

from radgpt.config import ConfigError, load_config

FINDINGS, IMPRESSIONS = test_train.FINDINGS, test_train.IMPRESSIONS
learnable_model_dir = test_train.learnable_model_dir  # the fixture: the tiny Llama that can learn
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def row(i: int, split: str, run: str, day: int, impression: bool = True, **kw) -> dict:
    f, imp = FINDINGS[i % 4], IMPRESSIONS[i % 4] if impression else None
    return dict(
        report_id=f"csv:{i:03d}", source="csv", source_uri="mem", source_member=str(i),
        source_sha256=hashlib.sha256(f"{i}{run}".encode()).hexdigest(), native_id=str(i),
        patient_id=None, study_id=None, exam_time=None, exam=None, status=None, sections=None,
        findings=f, impression=imp, findings_words=len(f.split()),
        impression_words=len(imp.split()) if imp else 0,
        pair_sha256=hashlib.sha256(f"{i}{f}{imp}".encode()).hexdigest(),
        eligible=imp is not None, exclusion_reason=None if imp else "no_impression",
        split=split, split_origin="random", ingest_run_id=run,
        ingested_at=T0 + dt.timedelta(days=day), **kw,
    )  # fmt: skip


def commit_rows(root: Path, rows: list[dict], run: str, day: int) -> None:
    """Rows committed as one ingest run (radgpt.table layout, hive source=/split=)."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from radgpt import table
    from radgpt.schema import arrow_schema

    t = pa.Table.from_pylist(rows, schema=arrow_schema("reports"))
    part = pads.partitioning(
        pa.schema([("source", pa.string()), ("split", pa.string())]), flavor="hive"
    )
    pads.write_dataset(t, table.staging_dir(root, run), format="parquet", partitioning=part)
    started = (T0 + dt.timedelta(days=day)).isoformat()
    table.commit(root, run, {"kind": "ingest", "started_at": started})


def cfg_for(tmp_path, **kw):
    base = {"paths.root": str(tmp_path / "var"), "train.effective_batch": 4,
            "train.micro_batch": 2, "train.cutoff_len": 128, "train.checkpoint_every": 50,
            "train.lr_schedule": "constant", "train.warmup_ratio": 0.0,
            "draft.max_new_tokens": 12, "draft.cpus_per_actor": 1, "gate.bootstrap": 200}  # fmt: skip
    return load_config(None, {**base, **kw}, env={})


def corrected(i: int, split: str, run: str, day: int, **kw) -> dict:
    """Version 2 of report i (ingested first in ingest-0): the reports table's next row for it
    (radgpt.table report versions: version n+1, supersedes the previous version's bytes)."""
    first = row(i, split, "ingest-0", 0)
    return {**row(i, split, run, day), "version": 2, "supersedes": first["source_sha256"], **kw}


def two_nights(cfg) -> None:
    """Night 0: 8 train + 2 validate + 8 test reports, and 2 train reports without an Impression.
    Night 5: 4 new train reports; the 2 reports of night 0 signed with an Impression and train
    report 7 amended, all three as version 2 in the reports table."""
    old = [row(i, "train", "ingest-0", 0, version=1) for i in range(8)]
    old += [row(i, "validate", "ingest-0", 0, version=1) for i in range(8, 10)]
    old += [row(i, "test", "ingest-0", 0, version=1) for i in range(10, 18)]
    old += [row(i, "train", "ingest-0", 0, impression=False, version=1) for i in (18, 19)]
    commit_rows(cfg.path("table"), old, "ingest-0", 0)
    night5 = [row(i, "train", "ingest-5", 5, version=1) for i in range(20, 24)]
    night5 += [corrected(i, "train", "ingest-5", 5) for i in (18, 19)]
    night5 += [corrected(7, "train", "ingest-5", 5, status="amended")]  # the same pair: the
    # slow gate test's learning stays as it was
    commit_rows(cfg.path("table"), night5, "ingest-5", 5)


def ids(ds) -> list[str]:
    return sorted(r["report_id"] for r in ds.take_all())


def test_since_and_later_versions_select_the_train_rows(ray_local, tmp_path):
    from radgpt import table
    from radgpt.train.data import read_split
    from radgpt.train.sources import since_time

    cfg = cfg_for(tmp_path)
    two_nights(cfg)
    root = cfg.path("table")
    assert len(table.read_reports(cfg, all_versions=True)) == 20 + 7
    # the current view: one row per report, its latest version (18, 19: signed; 7: amended)
    rows = read_split(root, "train").take_all()
    assert sorted(r["report_id"] for r in rows) == [
        f"csv:{i:03d}" for i in [*range(8), 18, 19, *range(20, 24)]
    ]
    assert [r["source_sha256"] for r in rows if r["report_id"] == "csv:007"] == [
        corrected(7, "train", "ingest-5", 5)["source_sha256"]
    ]
    # since filters the current view by its versions' ingested_at: a report corrected since counts
    # (each Ray Data run costs seconds on 2 cores: one more, the times are checked without Ray)
    got = ids(read_split(root, "train", since=since_time(cfg, "ingest-0")))
    assert got == [f"csv:{i:03d}" for i in (7, 18, 19, 20, 21, 22, 23)]
    day5 = T0 + dt.timedelta(days=5)
    assert since_time(cfg, "ingest-0") == (T0, False)  # rows after that run
    assert since_time(cfg, "2026-01-06") == (day5, True)  # a date: that day on
    assert since_time(cfg, "2026-01-03T12:00:00") == (T0 + dt.timedelta(days=2.5), True)
    assert since_time(cfg, "ingest-5") == (day5, False)
    with pytest.raises(ConfigError, match="no committed ingest run ingest-9"):
        since_time(cfg, "ingest-9")
    with pytest.raises(ConfigError, match="neither an ISO date"):
        since_time(cfg, "last tuesday")


def test_init_adapter_must_fit_the_run(tmp_path):
    from radgpt.train.sources import init_adapter

    cfg = cfg_for(tmp_path)
    d = tmp_path / "a"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"r": 8}))
    rec = {"adapter_id": "lora-a", "method": "lora", "base_sha256": "b" * 64,
           "config": {"lora": {"r": 16, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]}}}  # fmt: skip
    (d / "adapter_record.json").write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match=r"lora.r 16 != 8"):
        init_adapter(cfg, str(d), "b" * 64)
    rec["config"]["lora"]["r"] = 8
    (d / "adapter_record.json").write_text(json.dumps(rec))
    assert init_adapter(cfg, str(d), "b" * 64) == {"dir": str(d), "adapter_id": "lora-a",
                                                   "registry": None}  # fmt: skip
    with pytest.raises(ConfigError, match="trained on base bbbbbbbbbbbb"):
        init_adapter(cfg, str(d), "c" * 64)
    with pytest.raises(FileNotFoundError, match="init_adapter: adapter directory not found"):
        init_adapter(cfg, str(tmp_path / "nope"), "b" * 64)
    assert init_adapter(cfg, None, "b" * 64) is None


# ---- Ray Train + the gate (tiny model) ---------------------------------------------------------


ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def trained(cfg, steps: int, lr: float, **kw) -> dict:
    from radgpt.config import Config
    from radgpt.train.run import run_train

    c = Config.from_json(cfg.to_json())
    c.train.max_steps, c.train.lr = steps, lr
    for k, v in kw.items():
        setattr(c.train, k, v)
    return run_train(c)


@pytest.mark.slow
def test_retrain_from_an_adapter_and_the_gate(ray_local, learnable_model_dir, tmp_path):
    from mlflow import MlflowClient
    from safetensors.torch import load_file

    from radgpt.loop.promote import run_promote
    from radgpt.loop.retrain import plan
    from radgpt.model import registry

    cfg = cfg_for(tmp_path, **{"model.base": str(learnable_model_dir), "model.adapter": None,
                               "lora.target_modules": ALL, "train.micro_batch": 4,
                               "train.effective_batch": 8})  # fmt: skip
    two_nights(cfg)
    assert plan(cfg) == (None, None)  # no champion, no path adapter: every row, the base

    # the incumbent: a LoRA that has barely moved (1 step at a tiny lr)
    weak = trained(cfg, 1, 1e-6)
    assert weak["registry"]["version"] == "1" and weak["registry"]["alias"] == "challenger"
    registry.set_alias(cfg, "champion", "1")
    assert plan(cfg) == ("champion", "registry:champion")

    # the challenger: 30 steps from the champion, on every row (the weak one saw them all too)
    strong = trained(cfg, 30, 1e-2, init_adapter="registry:champion")
    assert strong["run"]["init_adapter"]["adapter_id"] == weak["adapter_id"]
    assert strong["run"]["init_adapter"]["registry"] == "models:/radgpt-impression/1"
    assert strong["dataset"]["rows"]["train"] == 14  # 8 + 4 new + 2 signed later
    assert strong["metrics"]["final_loss"] < 0.5 * strong["metrics"]["first_loss"]
    c = MlflowClient(tracking_uri=registry.uri(cfg), registry_uri=registry.uri(cfg))
    run = c.get_run(strong["registry"]["run_id"])
    assert json.loads(run.data.params["init_adapter"])["adapter_id"] == weak["adapter_id"]
    assert len(c.get_metric_history(run.info.run_id, "loss")) == 30

    d = run_promote(cfg, out=tmp_path / "gate1")
    assert d["decision"] == "promoted", d
    assert d["reports"] == 8 and [r["pass"] for r in d["criteria"]] == [True, True, True]
    r1 = d["criteria"][0]
    assert r1["challenger"] > r1["champion"] and r1["ci"][0] > 0
    assert registry.resolve(cfg, "champion").version == "2"
    out = Path(d["out"])
    assert {"decision.json", "promote.html", "evaluation"} <= {p.name for p in out.iterdir()}
    assert not (out / "_work").exists()  # report and draft text were not kept
    assert "PROMOTED" in (out / "promote.html").read_text().upper()
    v = {x["version"]: x for x in registry.versions(cfg)}
    assert (
        v["2"]["tags"]["gate.decision"] == "promoted" and v["1"]["tags"]["gate.replaced_by"] == "2"
    )
    gate_run = c.get_run(d["registry_run_id"])
    assert gate_run.data.tags["decision"] == "promoted"
    assert {f.path for f in c.list_artifacts(gate_run.info.run_id)} >= {
        "decision.json", "promote.html", "evaluation"
    }  # fmt: skip
    evals = c.list_artifacts(v["2"]["run_id"], "evaluation")
    assert [f.path for f in evals] == [f"evaluation/{d['gate_run_id']}"]

    # a deliberately worse challenger (1 step at a tiny lr from the base): refused
    worse = trained(cfg, 1, 1e-6, seed=7)
    assert worse["registry"]["version"] == "3"
    d = run_promote(cfg, out=tmp_path / "gate2")
    assert d["decision"] == "refused" and not d["criteria"][0]["pass"], d
    assert "ROUGE-1" in d["reason"]
    assert registry.resolve(cfg, "champion").version == "2"  # unchanged
    assert {x["version"]: x for x in registry.versions(cfg)}["3"]["tags"]["gate.decision"] == (
        "refused"
    )

    # starting from an adapter really starts from its weights (a near-zero step keeps them)
    again = trained(cfg, 1, 1e-9, init_adapter=str(strong["adapter_dir"]))
    a = load_file(Path(strong["adapter_dir"]) / "adapter_model.safetensors")
    b = load_file(Path(again["adapter_dir"]) / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-4 for k in a)
    assert any(a[k].abs().max() > 1e-3 for k in a if "lora_B" in k)  # not the zero init


@pytest.mark.slow
def test_drafts_name_their_registry_version(ray_local, tiny_model_dir, tmp_path):
    """The champion drafts (registry.champion_drafts): its version is in each draft row, and the
    draft ids are those of the same adapter given as a path (the version is not part of them)."""
    from radgpt.draft.run import run_draft
    from radgpt.model import registry
    from radgpt.writeback.drafts import read_drafts

    cfg = cfg_for(tmp_path, **{"model.base": str(tiny_model_dir), "model.adapter": None,
                               "draft.selection": "split", "draft.split": "test",
                               "draft.limit": 3, "draft.max_new_tokens": 4})  # fmt: skip
    two_nights(cfg)
    rec = trained(cfg, 1, 1e-3)
    registry.set_alias(cfg, "champion", rec["registry"]["version"])
    cfg.registry.champion_drafts = True
    s = run_draft(cfg)
    assert s["adapter_version"] == "models:/radgpt-impression/1" and s["committed"] == 3
    got = read_drafts(cfg.path("drafts")).to_pylist()
    assert {r["adapter_version"] for r in got} == {"models:/radgpt-impression/1"}
    assert {r["adapter_id"] for r in got} == {rec["adapter_id"]}
    cfg.registry.champion_drafts, cfg.model.adapter = False, rec["adapter_dir"]
    cfg.paths.drafts = str(tmp_path / "by-path")
    s2 = run_draft(cfg)
    assert s2["adapter_version"] is None
    by_path = read_drafts(cfg.path("drafts")).to_pylist()
    assert sorted(r["draft_id"] for r in by_path) == sorted(r["draft_id"] for r in got)
    assert {r["adapter_version"] for r in by_path} == {None}


def test_retrain_command_trains_from_the_champion_then_gates(tmp_path, monkeypatch, capsys):
    """`radgpt retrain`: since/init default to the champion, the new version goes to the gate."""
    from test_registry import fake_adapter

    import radgpt.loop.promote
    import radgpt.train.run
    from radgpt.cli import main
    from radgpt.model import registry

    cfg = cfg_for(tmp_path)
    a = fake_adapter(tmp_path / "a", "lora-aaaa")
    registry.log_training(
        cfg, json.loads((a / "adapter_record.json").read_text()), a, alias="champion"
    )
    seen = {}

    def run_train(c, out=None):
        seen["train"] = (c.train.since, c.train.init_adapter, c.train.max_steps, out)
        return {"adapter_id": "lora-b", "adapter_dir": "/b", "dataset": {"rows": {"train": 2}},
                "registry": {"version": "2"}, "run": {}, "metrics": {}}  # fmt: skip

    def run_promote(c, challenger="challenger", champion="champion", out=None, dry_run=False):
        seen["gate"] = (challenger, champion, dry_run, c.gate.reports)
        return {"gate_run_id": "promote-x", "decision": "refused", "reason": "fails: ROUGE-1",
                "criteria": []}  # fmt: skip

    monkeypatch.setattr(radgpt.train.run, "run_train", run_train)
    monkeypatch.setattr(radgpt.loop.promote, "run_promote", run_promote)
    argv = ["retrain", "--set", f"paths.root={tmp_path / 'var'}", "--max-steps", "5"]
    assert main([*argv, "--reports", "9", "--dry-run"]) == 0
    assert seen == {"train": ("champion", "registry:champion", 5, None),
                    "gate": ("2", "champion", True, 9)}  # fmt: skip
    assert "REFUSED" in capsys.readouterr().out
    assert main([*argv, "--since", "2026-01-01", "--init-adapter", str(a)]) == 0
    assert seen["train"][:2] == ("2026-01-01", str(a))
