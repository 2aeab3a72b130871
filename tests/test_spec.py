"""Typed model contracts: AdapterRecord (adapter_record.json) and ModelSpec round-trip to JSON with
a version stamp; the shipped adapter's record loads; older keys map; checks fail loudly.

    .venv/bin/pytest tests/test_spec.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radgpt.config import load_config
from radgpt.model import base as model
from radgpt.model.carry import CarryRates
from radgpt.model.ids import draft_id
from radgpt.model.spec import RECORD_VERSION, SPEC_VERSION, AdapterRecord, ModelSpec

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "iu-default"


@pytest.fixture
def cfg(tmp_path, tiny_model_dir):
    return load_config(
        overrides={
            "paths.root": str(tmp_path),
            "model.base": str(tiny_model_dir),
            "model.adapter": None,
        }
    )


def fake_adapter(d: Path, rec: dict) -> Path:
    """An adapter dir as far as the record goes (no weights: nothing here loads the model)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_record.json").write_text(json.dumps(rec))
    return d


def test_shipped_record_loads_as_is():
    raw = json.loads((SHIPPED / "adapter_record.json").read_text())
    assert "version" not in raw  # written before the stamp: reads as version 1
    rec = AdapterRecord.load(SHIPPED)
    assert rec.version == RECORD_VERSION == 1
    assert (rec.adapter_id, rec.template, rec.retrieval_k, rec.eos_token_id) == (
        "lora-ff4f100689aedf88", "chat-v1", 3, 1,
    )  # fmt: skip
    d = rec.to_dict()
    assert all(d[k] == v for k, v in raw.items())  # every key kept, same value
    assert AdapterRecord.from_json(rec.to_json()) == rec


def test_record_older_keys_and_extras(tmp_path):
    ad = fake_adapter(tmp_path / "my-adapter", {"base_model_sha256": "ab" * 32, "future": [1]})
    rec = AdapterRecord.load(ad)
    assert rec.base_sha256 == "ab" * 32 and "base_model_sha256" not in rec.to_dict()
    assert rec.to_dict()["future"] == [1]  # unknown keys are kept
    assert rec.adapter_id == "my-adapter" and rec.retrieval_k == 0  # defaults for absent keys
    both = AdapterRecord.from_dict({"base_sha256": "cd" * 32, "base_model_sha256": "ab" * 32})
    assert both.base_sha256 == "cd" * 32  # the current name wins


def test_wrong_versions_fail_loudly(cfg):
    with pytest.raises(ValueError, match="adapter record version 2 != supported 1"):
        AdapterRecord.from_dict({"version": 2, "adapter_id": "lora-x"})
    spec = json.loads(ModelSpec.resolve(cfg, None).to_json())
    with pytest.raises(ValueError, match="model spec version 9 != supported 1"):
        ModelSpec.from_json(json.dumps({**spec, "version": 9}))
    with pytest.raises(ValueError, match="retrieval_k"):  # a bad field names its key
        AdapterRecord.from_dict({"retrieval_k": "three"})


def test_spec_round_trips_and_names_the_drafts(cfg, tiny_model_dir):
    spec = ModelSpec.resolve(cfg, None)
    assert spec.version == SPEC_VERSION and ModelSpec.from_json(spec.to_json()) == spec
    sha = model.base_sha256(tiny_model_dir)
    assert (spec.base_model, spec.base_model_sha256) == (str(tiny_model_dir), sha)
    assert spec.model_key == f"base:{sha}" and spec.adapter_id is None
    assert (spec.prompt_name, spec.prompt_version, spec.task) == ("chat-v1", "1", "impression")
    gen = json.loads(spec.generation)
    # no train split in this table: every carry rate is 0.5 >= 0.4, every finding is "usual"
    usual = sorted(CarryRates.fit([], []).usual(0.4))
    assert gen == {"do_sample": False, "engine": "transformers", "max_new_tokens": 96,
                   "postprocess": "clean-v1", "dtype": model.resolve_dtype("auto", "cpu"),
                   "n_best": {"n": 4, "rerank_weight": 2.0, "usual": usual},
                   "review": {"carry_threshold": 0.4, "abnormal_threshold": 0.5,
                              "carry_rates_sha256": spec.carry_digest}}  # fmt: skip
    assert spec.generation == json.dumps(gen, sort_keys=True, separators=(",", ":"))
    named = {k: v for k, v in gen.items() if k != "review"}  # flags annotate, they do not name
    assert spec.id_settings == json.dumps(named, sort_keys=True, separators=(",", ":"))
    assert spec.draft_id("csv:1") == draft_id(
        "csv:1", f"base:{sha}", "chat-v1", "1", spec.id_settings
    )
    with pytest.raises(ValueError):  # frozen: a run's spec does not change under it
        spec.model_key = "x"


def test_the_resolved_dtype_names_the_drafts(cfg):
    """model.dtype auto resolves once per run, for the actors' device: bf16 on GPUs and on CPUs
    with native bf16, else fp32; the resolved dtype is part of the draft id (it changes a few
    greedy drafts), so fp32 and bf16 drafts of one report never share an id."""
    assert model.resolve_dtype("float32", "cuda") == "float32"  # an explicit dtype stays
    assert model.resolve_dtype("auto", "cuda") == "bfloat16"
    assert model.resolve_dtype("auto", "cpu") == ("bfloat16" if model.cpu_bf16() else "float32")
    specs = {}
    for d in ("float32", "bfloat16", "auto"):
        c = cfg.model_copy(deep=True)
        c.model.dtype = d
        specs[d] = ModelSpec.resolve(c, None)
    assert specs["float32"].dtype == "float32" and specs["bfloat16"].dtype == "bfloat16"
    assert specs["float32"].draft_id("csv:1") != specs["bfloat16"].draft_id("csv:1")
    auto = specs[model.resolve_dtype("auto", "cpu")]
    assert specs["auto"].draft_id("csv:1") == auto.draft_id("csv:1")
    gpu = cfg.model_copy(deep=True)
    gpu.draft.gpus_per_actor = 1  # GPU actors: bf16 whatever the driver's CPU
    assert ModelSpec.resolve(gpu, None).dtype == "bfloat16"
    old = ModelSpec.from_json(specs["auto"].to_json())  # a spec written before the dtype key
    g = json.loads(old.generation)
    g.pop("dtype")
    assert old.model_copy(update={"generation": json.dumps(g)}).dtype is None


def test_spec_from_an_adapter_record(cfg, tmp_path, tiny_model_dir):
    sha = model.base_sha256(tiny_model_dir)
    rec = {"adapter_id": "lora-1", "base_model_sha256": sha, "task": "explain", "cutoff_len": 64,
           "eos_token_id": 7, "template": "alpaca-v1"}  # fmt: skip
    spec = ModelSpec.resolve(cfg, fake_adapter(tmp_path / "ad", rec))
    assert (spec.model_key, spec.task, spec.cutoff_len, spec.eos_token_id) == (
        "lora-1",
        "explain",
        64,
        7,
    )
    assert spec.prompt_name == "alpaca-v1" and spec.adapter_dir == str(tmp_path / "ad")
    # absent keys fall back to the config, as before
    spec = ModelSpec.resolve(cfg, fake_adapter(tmp_path / "bare", {}))
    assert (spec.adapter_id, spec.task, spec.cutoff_len) == ("bare", "impression", 512)


def test_base_model_mismatch_raises(cfg, tmp_path):
    for key in ("base_sha256", "base_model_sha256"):
        ad = fake_adapter(tmp_path / key, {"adapter_id": "lora-1", key: "0" * 64})
        with pytest.raises(ValueError, match="was trained on base 000000000000"):
            ModelSpec.resolve(cfg, ad)


def test_training_writes_the_shipped_records_keys(cfg, tmp_path, tiny_model_dir):
    """train.adapter.build: the keys of the shipped record (older code) + the tokenizer hash and
    the version stamp; the written dict is what AdapterRecord reads back."""
    from radgpt.train.adapter import build

    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"weights")
    (out / "adapter_config.json").write_text("{}")
    run = {"run_id": "train-1", "metrics": str(tmp_path / "metrics.jsonl")}
    sha = model.base_sha256(tiny_model_dir)
    rec = build(cfg, out, tiny_model_dir, sha, {"rows": {}}, run, {"step": 0})
    shipped = json.loads((SHIPPED / "adapter_record.json").read_text())
    assert set(rec) == set(shipped) | {"base_tokenizer_sha256", "version"}
    assert rec["version"] == 1 and rec["base_sha256"] == sha and rec["template"] == "chat-v1"
    assert AdapterRecord.from_dict(rec).to_dict() == rec
    assert json.loads(json.dumps(rec)) == rec  # plain JSON, as write_json_atomic writes it


def test_nbest_drafts_are_named_by_the_observations_rewarded_not_the_counts(cfg, tmp_path):
    """Carry counts grow with the train split every night; a draft id changes only when an
    observation crosses draft.carry_threshold (the reranker then rewards something else)."""
    sha = model.base_sha256(cfg.model_path(cfg.model.base))
    got = []
    for i, (stated, carried) in enumerate([(10, 9), (20, 17), (10, 1)]):
        ad = fake_adapter(tmp_path / f"ad{i}", {"adapter_id": "lora-1", "base_model_sha256": sha})
        CarryRates({"Cardiomegaly": {"stated": stated, "carried": carried}}).save(ad)
        spec = ModelSpec.resolve(cfg, ad)
        got.append((spec.carry_digest, spec.draft_id("csv:1"), json.loads(spec.generation)))
    assert got[0][0] != got[1][0] and got[0][1] == got[1][1]  # new counts, same usual set
    assert got[0][2]["n_best"]["usual"] == ["Cardiomegaly"] and got[2][2]["n_best"]["usual"] == []
    assert got[2][1] != got[0][1]  # cardiomegaly (2/12) no longer rewarded: another draft
