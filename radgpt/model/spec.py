"""Typed model contracts: the adapter's record (written by training) and the drafting ModelSpec.

    from radgpt.model.spec import AdapterRecord, ModelSpec
    rec = AdapterRecord.load("models/iu-default")     # adapter_record.json, old key names included
    spec = ModelSpec.resolve(cfg, "models/iu-default")  # once per run: weights, prompt, settings
    spec.draft_id("csv:1")                             # the draft's deterministic id
    ModelSpec.from_json(spec.to_json()) == spec        # how it crosses into Ray actors

Both round-trip to JSON with a version stamp, like radgpt.config.Config; a stamp this code does not
know is an error. AdapterRecord keeps keys it does not know (a record is provenance, never
rewritten); older names are mapped in one place, `AdapterRecord.from_dict`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radgpt.model.ids import (
    canonical,
    draft_id,
    generation_settings,
    model_key,
    text_sha256,
)

if TYPE_CHECKING:
    from radgpt.config import Config

log = logging.getLogger("radgpt.model.spec")
RECORD_VERSION = 1  # adapter_record.json written before the stamp existed reads as 1
SPEC_VERSION = 1
# older key -> current key, in adapter records written by earlier code
RECORD_ALIASES = {"base_model_sha256": "base_sha256"}


class _Versioned(BaseModel):
    """JSON with a version stamp: to_json / from_json, like Config."""

    model_config = ConfigDict(frozen=True)
    KIND: ClassVar[str] = ""  # what it is, in messages
    SUPPORTED: ClassVar[int] = 0  # the version this code reads and writes
    version: int

    @model_validator(mode="after")
    def _known_version(self):
        if self.version != self.SUPPORTED:
            raise ValueError(
                f"{self.KIND} version {self.version} != supported {self.SUPPORTED} "
                "(written by another radgpt version)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<dict>"):
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            lines = [f"{'.'.join(map(str, x['loc'])) or '<root>'}: {x['msg']}" for x in e.errors()]
            raise ValueError(f"invalid {cls.KIND} ({origin}):\n  " + "\n  ".join(lines)) from None

    @classmethod
    def from_json(cls, text: str, origin: str = "<json>"):
        return cls.from_dict(json.loads(text), origin)


class AdapterRecord(_Versioned):
    """adapter_record.json: what an adapter was trained from and how drafting must prompt it."""

    model_config = ConfigDict(frozen=True, extra="allow")  # unknown keys are kept, never an error
    KIND: ClassVar[str] = "adapter record"
    SUPPORTED: ClassVar[int] = RECORD_VERSION

    version: int = Field(RECORD_VERSION, description="format version of this record")
    adapter_id: str | None = Field(
        None, description="lora-|full- + 16 hex of the weights' sha256; model key of its drafts"
    )
    method: str | None = Field(
        None, description="train.method: lora (PEFT dir) or full (model dir)"
    )
    base_model: str | None = Field(None, description="base model dir it was trained on")
    base_sha256: str | None = Field(
        None,
        description="base weights sha256 (older records: base_model_sha256); drafting refuses another base",
    )
    base_tokenizer_sha256: str | None = Field(
        None, description="sha256 of the base's tokenizer files; drafting warns on another"
    )
    dataset: dict[str, Any] | None = Field(
        None, description="training data snapshot: files, rows per split, sha256"
    )
    task: str | None = Field(None, description="instruction task (radgpt.model.prompts.TASKS)")
    instruction: str | None = Field(None, description="the task's instruction text")
    template: str | None = Field(None, description="prompt template name, reused when drafting")
    template_version: int | None = Field(None, description="prompt template version")
    retrieval_k: int = Field(0, description="retrieved examples per prompt (0: none)")
    retrieval: str | None = Field(None, description="'retrieval' (subdir) when retrieval_k > 0")
    cutoff_len: int | None = Field(None, description="prompt + response token budget in training")
    eos_token: str | None = Field(None, description="the token each training response ended with")
    eos_token_id: int | None = Field(None, description="its id: drafting also stops on it")
    config: dict[str, Any] | None = Field(None, description="the full resolved training config")
    config_hash: str | None = Field(None, description="Config.hash() of that config")
    code_version: str | None = Field(None, description="radgpt version + commit that trained")
    git_commit: str | None = Field(None, description="git commit of the training code")
    run: dict[str, Any] | None = Field(None, description="training run ids, paths, times")
    train_state: dict[str, Any] | None = Field(None, description="final step, examples, ...")
    metrics: dict[str, Any] | None = Field(None, description="loss / throughput summary")
    hardware: dict[str, Any] | None = Field(None, description="platform, torch, devices")

    @model_validator(mode="before")
    @classmethod
    def _older_keys(cls, data: Any) -> Any:
        """Every fallback for older or missing keys lives here."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in RECORD_ALIASES.items():
            if old in data:
                value = data.pop(old)
                data[new] = data.get(new) or value
        if data.get("retrieval_k") is None:
            data["retrieval_k"] = 0
        return data

    @classmethod
    def load(cls, adapter_dir: str | os.PathLike) -> AdapterRecord:
        """The record in an adapter dir; adapter_id defaults to the dir's name."""
        from radgpt.model.base import ADAPTER_RECORD, read_adapter_record

        raw = read_adapter_record(adapter_dir)
        rec = cls.from_dict(raw, str(Path(adapter_dir) / ADAPTER_RECORD))
        if not rec.adapter_id:
            rec = rec.model_copy(update={"adapter_id": Path(adapter_dir).name})
        return rec


class ModelSpec(_Versioned):
    """Run-level constants of drafting: which weights, prompt and generation settings draft.

    Resolved once per run (`resolve`) and handed to selection, every Drafter (as JSON) and serve;
    `model_key`, `prompt_name`, `prompt_version` and `generation` make each draft's id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    KIND: ClassVar[str] = "model spec"
    SUPPORTED: ClassVar[int] = SPEC_VERSION

    version: int = Field(SPEC_VERSION, description="format version of this spec")
    base_model: str = Field(description="base model dir: loaded by drafting, drafts.base_model")
    base_model_sha256: str = Field(description="sha256 of the base weights (drafts column)")
    adapter_dir: str | None = Field(description="PEFT adapter (or full model) dir; None: base only")
    adapter_id: str | None = Field(description="the adapter record's id; None: base model only")
    adapter_version: str | None = Field(
        None,
        description="model registry version models:/<model>/<n> the adapter came from; None: a "
        "path (drafts column adapter_version; not part of the draft id)",
    )
    model_key: str = Field(description="adapter_id, or base:<base sha256>; part of the draft id")
    prompt_name: str = Field(
        description="prompt template name (the adapter's, else model.template)"
    )
    prompt_version: str = Field(description="prompt template version, as a string")
    task: str = Field(description="instruction task (the adapter's, else train.task)")
    cutoff_len: int = Field(description="prompt + output token budget (the adapter's)")
    eos_token_id: int | None = Field(
        description="the token the adapter's training responses ended with; drafting stops on it"
    )
    retrieval_k: int = Field(description="retrieved examples per prompt (0: none)")
    retrieval_table: str = Field(description="reports table whose train split is the corpus")
    retrieval_digest: str | None = Field(description="digest of the retrieval corpus (k > 0)")
    carry_digest: str | None = Field(
        None, description="digest of the carry rates the review flags use (radgpt.model.carry)"
    )
    generation: str = Field(
        description="canonical JSON of the generation settings (+ retrieval, carry rates); part of the draft id"
    )

    def draft_id(
        self, report_id: str, version: int | None = None, findings: str | None = None
    ) -> str:
        """The deterministic id of this model's draft of one report. A later version of a report
        (version > 1: corrected) adds its Findings' hash, so it gets a new draft; a first version
        (version None or 1) keeps the id it always had."""
        f = text_sha256(findings) if version is not None and version > 1 else None
        return draft_id(
            report_id, self.model_key, self.prompt_name, self.prompt_version, self.id_settings, f
        )

    @property
    def dtype(self) -> str | None:
        """The weights' dtype drafting runs in (resolved from model.dtype); None: an older spec."""
        return json.loads(self.generation).get("dtype")

    @property
    def rerank_neighbours(self) -> tuple[int, float]:
        """(k, weight) of the n-best reranker's agreement with the neighbours' Impressions;
        (0, 0.0) when off (no n-best, no retrieval, or draft.rerank_neighbours 0)."""
        nb = json.loads(self.generation).get("n_best", {}).get("neighbours")
        return (nb["k"], nb["weight"]) if nb else (0, 0.0)

    @property
    def id_settings(self) -> str:
        """The generation settings that name a draft: all of `generation` but the review flags'
        settings (the flags annotate a draft, they do not change its text; carry rates learned from
        a growing train split must not re-draft every night). The n-best reranker's input is named
        by `n_best.usual`, the observations it rewards, which changes only when one crosses
        draft.carry_threshold."""
        g = json.loads(self.generation)
        if "review" not in g:
            return self.generation
        return canonical({k: v for k, v in g.items() if k != "review"})

    @classmethod
    def resolve(
        cls,
        cfg: Config,
        adapter_dir: str | os.PathLike | None,
        table=None,
        adapter_version: str | None = None,
    ) -> ModelSpec:
        """The spec for cfg + adapter_dir: hashes the base, reads and checks the adapter's record.

        With retrieval (the record's retrieval_k > 0) the examples come from the adapter's own
        corpus, else from the train split of `table` (default paths.table); the corpus digest joins
        the generation settings, so it is part of every draft's id and provenance. So do the carry
        rates' digest (the adapter's carry_rates.json, else learned from that train split).
        """
        from radgpt.model import base as model
        from radgpt.model import prompts

        base = model.ensure_default_model(cfg)  # the embedded SmolLM2 is imported on first use
        rec = AdapterRecord.load(adapter_dir) if adapter_dir else AdapterRecord()
        tpl = prompts.get(rec.template or cfg.model.template)
        sha = model.base_sha256(base)
        if rec.base_sha256 and rec.base_sha256 != sha:
            raise ValueError(
                f"adapter {adapter_dir} was trained on base {rec.base_sha256[:12]}, not {base}"
            )
        if rec.base_tokenizer_sha256 and rec.base_tokenizer_sha256 != model.tokenizer_sha256(base):
            log.warning(
                "adapter %s was trained with another tokenizer than %s has (same weights): drafts "
                "stop on the record's eos_token_id %s too; re-import the base with the training's "
                "transformers version if drafts look wrong",
                adapter_dir,
                base,
                rec.eos_token_id,
            )
        from radgpt.model.carry import CarryRates

        settings, k = generation_settings(cfg), rec.retrieval_k
        # the weights' dtype changes a few greedy drafts (bf16 vs fp32: 95.5% identical), so the
        # resolved one names the draft; GPU actors resolve as CUDA, CPU ones by this CPU's flags
        device = "cuda" if cfg.draft.gpus_per_actor > 0 else "cpu"
        settings["dtype"] = model.resolve_dtype(cfg.model.dtype, device)
        tbl = str(Path(table) if table else cfg.path("table"))
        digest = None
        if k > 0:
            from radgpt.model.retrieval import Retriever

            digest = Retriever.for_adapter(adapter_dir, tbl).digest
            settings["retrieval"] = {"k": k, "corpus_sha256": digest}
            if (w := cfg.draft.retrieval_finding_weight) > 0:
                settings["retrieval"] |= {"finding_weight": w, "pool": cfg.draft.retrieval_pool}
        rates = CarryRates.for_adapter(adapter_dir, tbl)
        carry = rates.digest
        settings["review"]["carry_rates_sha256"] = carry
        if "n_best" in settings:  # what the reranker rewards: the usually-carried observations
            settings["n_best"]["usual"] = sorted(rates.usual(cfg.draft.carry_threshold))
            if k == 0:  # no retriever: no neighbours to agree with
                settings["n_best"].pop("neighbours", None)
        gen = canonical(settings)
        return cls(
            base_model=str(base),
            base_model_sha256=sha,
            adapter_dir=str(adapter_dir) if adapter_dir else None,
            adapter_id=rec.adapter_id,
            adapter_version=adapter_version,
            model_key=model_key(rec.adapter_id, sha),
            prompt_name=tpl.name,
            prompt_version=str(tpl.version),
            task=rec.task or cfg.train.task,
            cutoff_len=rec.cutoff_len or cfg.train.cutoff_len,
            eos_token_id=rec.eos_token_id,
            retrieval_k=k,
            retrieval_table=tbl,
            retrieval_digest=digest,
            carry_digest=carry,
            generation=gen,
        )
