"""Config sections of the training wing: the LoRA adapter (lora.*, peft.LoraConfig) and the
training run (train.*, radgpt.train)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from radgpt.config.sections import _Cfg


class LoraCfg(_Cfg):
    """Maps one to one onto peft.LoraConfig."""

    r: int = Field(
        default=8,
        ge=1,
        description="LoRA rank (peft.LoraConfig.r): r x (in + out) trained weights per targeted "
        "Linear",
    )
    lora_alpha: int = Field(
        default=16,
        ge=1,
        description="LoRA scaling (peft.LoraConfig.lora_alpha): updates scaled by lora_alpha / r",
    )
    lora_dropout: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="dropout on the LoRA path (peft.LoraConfig.lora_dropout)",
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        description="names of the Linear modules that get LoRA (peft.LoraConfig.target_modules); "
        "names matching no Linear are an error",
    )
    bias: Literal["none", "all", "lora_only"] = Field(
        default="none",
        description="biases trained too (peft.LoraConfig.bias): none, all, or lora_only (those "
        "of the targeted modules)",
    )


class TrainCfg(_Cfg):
    method: Literal["lora", "full"] = Field(
        default="lora",
        description="lora = a LoRA adapter (the lora section); full = every weight trained, the "
        "output a whole model dir",
    )
    task: str = Field(
        default="impression",
        description="instruction task of the records (radgpt.model.prompts.TASKS)",
    )
    lr: float = Field(
        default=3e-4, gt=0, description="peak AdamW learning rate (after warmup, per lr_schedule)"
    )
    effective_batch: int = Field(
        default=128,
        ge=1,
        description="examples per optimizer step = micro_batch x grad_accum x num_workers; a "
        "multiple of micro_batch x num_workers (grad_accum is derived)",
    )
    micro_batch: int = Field(
        default=4,
        ge=1,
        description="examples per forward/backward on each worker, accumulated to "
        "effective_batch (memory: keep <= 4 at 512 tokens for the 135M model on CPU, "
        "docs/training.md)",
    )
    epochs: float = Field(
        default=3,
        gt=0,
        description="passes over the train split (may be fractional); max_steps overrides it",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="optimizer steps of the run (`--max-steps`); null = from epochs",
    )
    cutoff_len: int = Field(
        default=512,
        ge=16,
        description="tokens of prompt + response; longer prompts are truncated (counted; "
        "docs/training.md)",
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        default="cosine",
        description="learning rate after the linear warmup: constant, or a linear or cosine "
        "decay to 0 at the last step",
    )
    warmup_ratio: float = Field(
        default=0.03,
        ge=0,
        lt=1,
        description="share of the optimizer steps with a linear learning-rate warmup",
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
    group_by_length: bool = Field(
        default=True,
        description="sort examples by length inside windows of 64 micro-batches, then shuffle "
        "the batch order: less padding (docs/benchmarks.md `## train`)",
    )
    retrieval_k: int = Field(
        default=0,
        ge=0,
        description="k similar train reports (TF-IDF) in each prompt, saved with the adapter "
        "for drafting; 0 = off",
    )
    seed: int = Field(
        default=42, description="seed of torch (LoRA init, dropout) and of the batch order"
    )
    checkpoint_every: int = Field(
        default=50,
        ge=1,
        description="optimizer steps between checkpoints (paths.checkpoints; one at the end too)",
    )
    since: str | None = Field(
        default=None,
        description="train on rows ingested since: an ISO date/time (at or after), an ingest run "
        'id (after that run) or "champion" (after the registry champion\'s training began); '
        "null = every row. Filters the train split only (validation stays whole); docs/loop.md",
    )
    init_adapter: str | None = Field(
        default=None,
        description="start from this adapter's LoRA weights (a dir or "
        '"registry:<alias or version>") instead of a fresh LoRA; its base and LoRA shape must '
        "match; null = from the base model",
    )
    num_workers: int = Field(
        default=1,
        ge=1,
        description="Ray Train workers (data parallel: gloo on CPU, NCCL on GPU)",
    )
    use_gpu: bool = Field(default=False, description="one GPU per worker; false = CPU")
    cpus_per_worker: int = Field(
        default=1,
        ge=1,
        description="CPUs Ray reserves per training worker; also its torch threads on CPU",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="compute dtype of training: bfloat16 = bf16 autocast, with LoRA's frozen "
        "Linear weights stored in bf16 (what autocast multiplies with anyway: same losses, no "
        "cast per op; LoRA weights, embeddings, norms and the optimizer stay fp32); auto = "
        "bfloat16 on GPUs and on CPUs with native bf16 (AMX, AVX512-BF16), else float32",
    )
    compile: bool = Field(
        default=False,
        description="train under torch.compile(dynamic=True) (the forward and backward of each "
        "micro-batch; validation and checkpoints use the same weights eagerly): on a 2-core CPU "
        "1.23x tokens/s after ~5.5 minutes of compiling (docs/benchmarks.md), so for long runs",
    )
    activation_checkpointing: bool = Field(
        default=False,
        description="keep only each decoder layer's input for the backward pass and recompute "
        "the rest there (transformers' gradient checkpointing, non-reentrant; dropout replayed: "
        "the same gradients): far less memory for one more forward per micro-batch, for "
        "machines where micro_batch does not fit (docs/training.md)",
    )

    @property
    def grad_accum(self) -> int:
        return self.effective_batch // (self.micro_batch * self.num_workers)

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainCfg:
        per_step = self.micro_batch * self.num_workers
        if self.effective_batch % per_step:
            raise ValueError(
                f"effective_batch={self.effective_batch} is not a multiple of "
                f"micro_batch x num_workers = {per_step}"
            )
        return self
