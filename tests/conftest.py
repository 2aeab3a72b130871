"""Shared fixtures: a real local SparkSession, a real local Ray, a tiny random Llama + tokenizer.

The tiny model is built here from scratch (no hub, seconds on CPU): a byte-level BPE tokenizer
trained on a few hundred synthetic report sentences, with a ChatML chat template like SmolLM2's,
and a 2-layer LlamaForCausalLM of hidden size 64.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parent.parent
IU_CSV = REPO.parent / "shared" / "data" / "iu_xray" / "indiana_reports.csv"

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SENTENCES = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "No acute cardiopulmonary abnormality.",
    "Mild cardiomegaly. Small left pleural effusion. Right lower lobe consolidation.",
    "Derive the impression from findings in the radiology report",
    "Findings: Stable postoperative changes. Impression: No acute disease.",
    "There is a 1 cm nodule in the right upper lobe. Degenerative changes of the thoracic spine.",
]


@pytest.fixture(scope="session")
def iu_csv() -> Path:
    """The real IU X-ray CSV in ../shared; tests that need it skip cleanly on a fresh clone."""
    if not IU_CSV.is_file():
        pytest.skip(f"{IU_CSV} not present")
    return IU_CSV


def build_tiny_model(out: Path, vocab_size: int = 512, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random tiny Llama + BPE tokenizer (with chat template) as a HF directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def spark():
    """A real local SparkSession on 2 cores, shared by the whole test session."""
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    s = (
        SparkSession.builder.master("local[2]")
        .appName("radgpt-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with the machine's real CPU count (2 here), shared by the session."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            namespace="radgpt-tests",
            runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
        )
    yield ray
    ray.shutdown()
