"""Local base models: clear errors, loading, weight hashing, the embedded SmolLM2 import.

.venv/bin/pytest tests/test_model.py -q            # fast
.venv/bin/pytest tests/test_model.py -q -m slow    # real GGUF import + generation
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from radgpt.model import base as model


def test_missing_base_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*import-smollm2"):
        model.require_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model"):
        model.load(tmp_path / "empty")


def test_non_default_missing_base_is_not_imported(tmp_path):
    from radgpt.config import load_config

    cfg = load_config(None, {"paths.root": str(tmp_path), "model.base": str(tmp_path / "mine")})
    with pytest.raises(FileNotFoundError, match="mine"):
        model.ensure_default_model(cfg)
    assert not (tmp_path / "models").exists()


def test_load_and_hash(tiny_model_dir, tmp_path):
    m, tok = model.load(tiny_model_dir)
    assert not m.training and tok.pad_token is not None
    d = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, d)
    h = model.base_sha256(d)
    assert h == model.base_sha256(tiny_model_dir) and len(h) == 64
    assert json.loads((d / model.RECORD).read_text())["weights_sha256"] == h  # cached
    from safetensors.torch import load_file, save_file

    sd = load_file(d / "model.safetensors")
    k = next(iter(sd))
    sd[k] = sd[k] + 1
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    assert model.base_sha256(d) != h  # stale cache is recomputed


def test_adapter_record_missing_is_clear(tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="adapter_record.json"):
        model.read_adapter_record(tiny_model_dir)


def test_embedded_gguf_is_found():
    p = model.find_smollm2_gguf()
    assert p.name == model.SMOLLM2_GGUF and p.stat().st_size > 50_000_000


@pytest.mark.slow
def test_import_smollm2_generates_sensible_text(tmp_path):
    """GGUF -> bf16 safetensors dir with a source record; the model answers a chat prompt."""
    import torch

    out = model.import_gguf(model.find_smollm2_gguf(), tmp_path / "smollm2")
    rec = json.loads((out / model.RECORD).read_text())
    from radgpt.runtime import sha256_file

    assert rec["source_sha256"] == sha256_file(model.find_smollm2_gguf())
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    m, tok = model.load(out)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    x = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        y = m.generate(**x, max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(y[0, x["input_ids"].shape[1] :])


def test_a_full_model_dir_replaces_the_base(tiny_model_dir, tmp_path):
    """train.method=full writes a whole model dir: given as the adapter, it is what loads (the
    base is not read); a PEFT dir stays an adapter on the base."""
    full = tmp_path / "full"
    shutil.copytree(tiny_model_dir, full)
    assert model.weights_dirs(tmp_path / "gone", full) == (full, None)
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    assert model.weights_dirs(tiny_model_dir, lora) == (Path(tiny_model_dir), lora)
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        model.weights_dirs(tmp_path / "gone", lora)
    m, tok = model.load(tmp_path / "gone", full)
    assert not m.training and tok.pad_token is not None
