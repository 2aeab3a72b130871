"""The drafting model: what drafts (model_spec: weights, prompt, settings) and the Drafter.

    from radgpt.draft.drafter import Drafter, adapter_dir, generate, model_spec
    generate(cfg, ["The heart is normal ..."], adapter=None)     # in-process greedy drafts
    d = Drafter(cfg.to_json(), model_spec(cfg, adapter_dir(cfg)))  # what each Ray actor holds
    d.generate(["..findings.."])                                  # [{"draft": ..., ...}]

The Drafter loads the model once (base + LoRA merged, radgpt.model.base.load) and drafts length-sorted,
left-padded batches: greedy by default, at most draft.max_new_tokens, stop at EOS. Prompts are
built exactly as in training (radgpt.model.prompts Template.fit with the adapter's template, task,
cutoff_len and retrieved neighbours when its record says retrieval_k > 0). radgpt.draft.run runs it
as a Ray Data actor pool; radgpt.draft.serve runs it behind HTTP.
Test hook: fault_marker=<file> (radgpt.draft.run passes env RADGPT_FAULT_ONCE) makes the Drafter
os._exit() on its first batch, once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pyarrow as pa

from radgpt.config import Config
from radgpt.draft.flags import review_flags
from radgpt.runtime import code_version, utcnow
from radgpt.schema import arrow_schema
from radgpt.writeback.provenance import (
    canonical,
    generation_json,
    generation_settings,
    model_key,
    text_sha256,
)

log = logging.getLogger("radgpt.draft.drafter")


def model_spec(cfg: Config, adapter_dir: str | os.PathLike | None, data=None) -> dict:
    """Run-level constants: which weights, prompt and generation settings draft (and their ids).

    With retrieval (the adapter record's retrieval_k > 0) the examples come from the adapter's own
    corpus, else from the train split of `data` (default paths.table); the corpus digest joins the
    generation settings, so it is part of every draft's id and provenance.
    """
    from radgpt.model import base as model
    from radgpt.model import prompts

    base = model.require_dir(cfg.model_path(cfg.model.base))
    rec = model.read_adapter_record(adapter_dir) if adapter_dir else {}
    tpl = prompts.get(rec.get("template") or cfg.model.template)
    sha = model.base_sha256(base)
    adapter_id = (rec.get("adapter_id") or Path(adapter_dir).name) if adapter_dir else None
    want = rec.get("base_sha256") or rec.get("base_model_sha256")
    if want and want != sha:
        raise ValueError(f"adapter {adapter_dir} was trained on base {want[:12]}, not {base}")
    tok_sha = rec.get("base_tokenizer_sha256")
    if tok_sha and tok_sha != model.tokenizer_sha256(base):
        log.warning(
            "adapter %s was trained with another tokenizer than %s has (same weights): drafts stop "
            "on the record's eos_token_id %s too; re-import the base with the training's "
            "transformers version if drafts look wrong",
            adapter_dir,
            base,
            rec.get("eos_token_id"),
        )
    gen, k = generation_json(cfg), int(rec.get("retrieval_k") or 0)
    table = str(Path(data) if data else cfg.path("table"))
    digest = None
    if k > 0:
        from radgpt.model.retrieval import Retriever

        digest = Retriever.for_adapter(adapter_dir, table).digest
        gen = canonical(
            {**generation_settings(cfg), "retrieval": {"k": k, "corpus_sha256": digest}}
        )
    return {
        "base_dir": str(base),
        "adapter_dir": str(adapter_dir) if adapter_dir else None,
        "base_model": str(base),
        "base_model_sha256": sha,
        "adapter_id": adapter_id,
        "prompt_name": tpl.name,
        "prompt_version": str(tpl.version),
        "generation": gen,
        "task": rec.get("task") or cfg.train.task,
        "retrieval_k": k,
        "eos_token_id": rec.get("eos_token_id"),  # the response terminator seen in training
        "retrieval_table": table,
        "retrieval_digest": digest,
        "cutoff_len": int(rec.get("cutoff_len") or cfg.train.cutoff_len),
        "model_key": model_key(adapter_id, sha),
    }


def adapter_dir(cfg: Config, adapter: str | bool | None = True) -> Path | None:
    """True: cfg.model.adapter; None/False: base model only; a str: that adapter dir."""
    raw = cfg.model.adapter if adapter is True else (adapter or None)
    return cfg.model_path(raw) if raw else None


class Drafter:
    """Model + tokenizer + template (+ retriever), loaded once; a Ray Data callable class."""

    def __init__(self, cfg_json: str, spec: dict, run: dict | None = None, fault_marker=None):
        import torch

        from radgpt.model import base as model
        from radgpt.model import prompts

        self.cfg, self.spec, self.run = Config.from_json(cfg_json), spec, run or {}
        self.fault_marker = fault_marker
        d = self.cfg.draft
        if d.engine == "vllm":
            try:
                import vllm  # noqa: F401
            except ImportError:
                raise RuntimeError(
                    "draft.engine=vllm needs the vllm extra: pip install 'radgpt[vllm]' "
                    "(on a GPU machine), or set draft.engine=transformers"
                ) from None
            raise NotImplementedError("draft.engine=vllm is reserved; use transformers")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if run and self.device == "cpu":  # a Ray actor: keep torch within its CPU share
            torch.set_num_threads(d.threads_per_actor or max(1, int(d.cpus_per_actor)))
        self.model, self.tok = model.load(
            spec["base_dir"],
            spec["adapter_dir"],
            merge=d.merge_adapter,
            dtype=self.cfg.model.dtype,
            device=self.device,
        )
        self.tpl = prompts.get(spec["prompt_name"])
        self.instruction = prompts.instruction(spec["task"])
        self.retriever = None
        if spec["retrieval_k"] > 0:
            from radgpt.model.retrieval import Retriever

            r = Retriever.for_adapter(spec["adapter_dir"], spec["retrieval_table"])
            if r.digest != spec["retrieval_digest"]:  # the table changed since the run began
                raise RuntimeError(f"retrieval corpus {r.digest} != {spec['retrieval_digest']}")
            self.retriever = r
        # stop on the tokenizer's EOS, the generation config's, and the one the adapter was trained
        # to end with (tokenizers of one GGUF differ across transformers versions)
        eos = {self.tok.eos_token_id, spec.get("eos_token_id")}
        g = self.model.generation_config.eos_token_id
        eos |= set(g if isinstance(g, list) else [g] if g is not None else [])
        self.eos = sorted(e for e in eos if e is not None)
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos[0]
        self.host = socket.gethostname()

    def prompts(self, findings: list[str], report_ids: list[str | None]) -> list[list[int]]:
        """Token ids per report, truncated like training (budget leaves room for the output)."""
        k = self.spec["retrieval_k"]
        ex = (
            self.retriever.query(findings, k, exclude_ids=report_ids)
            if self.retriever
            else [()] * len(findings)
        )
        budget = max(16, self.spec["cutoff_len"] - self.cfg.draft.max_new_tokens)
        t = self.spec["task"]
        return [
            self.tpl.fit(self.tok, t, f, e, budget)[0] for f, e in zip(findings, ex, strict=True)
        ]

    def generate(
        self, findings: list[str], report_ids: list[str | None] | None = None
    ) -> list[dict]:
        """Drafts in input order: {draft, prompt_tokens, output_tokens, truncated, latency_ms}."""
        import torch

        d = self.cfg.draft
        ids = self.prompts(findings, report_ids or [None] * len(findings))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # length-sorted batches
        out: list[dict] = [{}] * len(ids)
        sampling = {"temperature": d.temperature, "top_p": d.top_p} if d.do_sample else {}
        for s in range(0, len(order), d.batch_size):
            idx = order[s : s + d.batch_size]
            width = max(len(ids[i]) for i in idx)
            # left padding: every prompt ends at column `width`, where generation starts
            x = torch.tensor([[self.pad] * (width - len(ids[i])) + ids[i] for i in idx])
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in idx])
            t0 = time.perf_counter()
            with torch.inference_mode():
                y = self.model.generate(
                    input_ids=x.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=d.max_new_tokens,
                    do_sample=d.do_sample,
                    eos_token_id=self.eos,
                    pad_token_id=self.pad,
                    **sampling,
                )
            ms = (time.perf_counter() - t0) * 1000 / len(idx)  # per-report share of the batch
            for row, i in zip(y[:, width:].tolist(), idx, strict=True):
                stop = next((j for j, v in enumerate(row) if v in self.eos), None)
                toks = row if stop is None else row[:stop]
                out[i] = {
                    "draft": self.tok.decode(toks, skip_special_tokens=True).strip(),
                    "prompt_tokens": len(ids[i]),
                    "output_tokens": len(toks) + (stop is not None),
                    "truncated": stop is None and len(row) >= d.max_new_tokens,
                    "latency_ms": ms,
                }
        return out

    def flags(self, findings: str, o: dict) -> list[str]:
        return review_flags(
            findings, o["draft"], truncated=o["truncated"], instruction=self.instruction
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.fault_marker and not os.path.exists(self.fault_marker):
            Path(self.fault_marker).write_text(str(os.getpid()))
            os._exit(1)  # test hook: die mid-run once; Ray restarts the actor, retries the batch
        rows = batch.to_pylist()
        outs = self.generate([r["findings"] for r in rows], [r["report_id"] for r in rows])
        now, s = utcnow(), self.spec
        res = []
        for r, o in zip(rows, outs, strict=True):
            res.append(
                {
                    **{k: r[k] for k in ("draft_id", "report_id", "source")},
                    **{k: r[k] for k in ("patient_id", "study_id", "source_sha256")},
                    "draft": o["draft"],
                    "flags": self.flags(r["findings"], o),
                    **{k: s[k] for k in ("base_model", "base_model_sha256", "adapter_id")},
                    **{k: s[k] for k in ("prompt_name", "prompt_version", "generation")},
                    "findings_sha256": text_sha256(r["findings"]),
                    "run_id": self.run["run_id"],
                    "code_version": code_version(),
                    "worker_host": self.host,
                    "generated_at": now,
                    "prompt_tokens": o["prompt_tokens"],
                    "output_tokens": o["output_tokens"],
                    "latency_ms": o["latency_ms"],
                    "run_date": self.run["run_date"],
                }
            )
        return pa.Table.from_pylist(res, schema=arrow_schema("drafts"))


_CACHED: dict = {}


def generate(cfg: Config, findings: list[str], adapter: str | None | bool = True) -> list[str]:
    """In-process greedy drafts (no Ray) for a list of Findings, in order."""
    a = adapter_dir(cfg, adapter)
    key = (cfg.hash(), str(a))
    if key not in _CACHED:
        _CACHED.clear()  # one model in memory at a time
        _CACHED[key] = Drafter(cfg.to_json(), model_spec(cfg, a))
    return [o["draft"] for o in _CACHED[key].generate(list(findings))]
