"""Drafting as three stages, as ray.data.llm's processors: preprocess -> engine -> postprocess.

    pre = Preprocess(spec, tok, max_new_tokens)   # neighbours + template + tokenize: token ids
    gens = HFEngine(spec, cfg)(pre(findings, report_ids))   # generate: Generation per prompt
    outs = post.outputs(prompts, gens)             # decode + strip: {draft, tokens, truncated, ...}
    rows = post.rows(reports, outs)                # flags + provenance: drafts table rows

radgpt.draft.drafter.Drafter composes the three in one process (a Ray actor, serve, or in
process). `draft.engine` picks the engine stage from ENGINES; an engine takes the prompts' token
ids and gives, in input order, what it generated for each (the tokens before the stop token).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from radgpt.config import Config
from radgpt.draft.flags import review_flags
from radgpt.model.ids import text_sha256
from radgpt.model.spec import ModelSpec
from radgpt.runtime import code_version, utcnow


class Preprocess:
    """Findings -> prompt token ids, built as in training (template, task, cutoff_len, examples)."""

    def __init__(self, spec: ModelSpec, tokenizer, max_new_tokens: int):
        from radgpt.model import prompts

        self.spec, self.tok = spec, tokenizer
        self.tpl = prompts.get(spec.prompt_name)
        # truncated like training, the budget leaves room for the output
        self.budget = max(16, spec.cutoff_len - max_new_tokens)
        self.retriever = None
        if spec.retrieval_k > 0:
            from radgpt.model.retrieval import Retriever

            r = Retriever.for_adapter(spec.adapter_dir, spec.retrieval_table)
            if r.digest != spec.retrieval_digest:  # the table changed since the run began
                raise RuntimeError(f"retrieval corpus {r.digest} != {spec.retrieval_digest}")
            self.retriever = r

    def __call__(self, findings: list[str], report_ids: list[str | None]) -> list[list[int]]:
        """Token ids per report; a report is never its own retrieved example."""
        k = self.spec.retrieval_k
        ex = (
            self.retriever.query(findings, k, exclude_ids=report_ids)
            if self.retriever
            else [()] * len(findings)
        )
        t = self.spec.task
        return [
            self.tpl.fit(self.tok, t, f, e, self.budget)[0]
            for f, e in zip(findings, ex, strict=True)
        ]


@dataclass(frozen=True)
class Generation:
    """What an engine generated for one prompt."""

    tokens: list[int]  # generated ids before the stop token
    stopped: bool  # ended on a stop (EOS) token
    truncated: bool  # hit max_new_tokens before a stop token
    latency_ms: float  # the per-report share of its generate batch's wall time


class HFEngine:
    """transformers `generate` on length-sorted, left-padded batches of draft.batch_size.

    Loads base + adapter once (radgpt.model.base.load, LoRA merged when draft.merge_adapter), on
    CUDA when visible, else CPU with `threads` torch threads when given (a Ray actor's share).
    Greedy by default, at most draft.max_new_tokens, stops on the tokenizer's EOS, the generation
    config's and the one the adapter was trained to end with (spec.eos_token_id).
    """

    def __init__(self, spec: ModelSpec, cfg: Config, threads: int | None = None):
        import torch

        from radgpt.model import base as model

        self.draft = d = cfg.draft
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads and self.device == "cpu":
            torch.set_num_threads(threads)
        self.model, self.tokenizer = model.load(
            spec.base_model,
            spec.adapter_dir,
            merge=d.merge_adapter,
            dtype=cfg.model.dtype,
            device=self.device,
        )
        # tokenizers of one GGUF differ across transformers versions: stop on every candidate
        eos = {self.tokenizer.eos_token_id, spec.eos_token_id}
        g = self.model.generation_config.eos_token_id
        eos |= set(g if isinstance(g, list) else [g] if g is not None else [])
        self.eos = sorted(e for e in eos if e is not None)
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else self.eos[0]

    def __call__(self, prompts: list[list[int]]) -> list[Generation]:
        """One Generation per prompt, in input order."""
        import torch

        d = self.draft
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # length-sorted
        out: list[Any] = [None] * len(prompts)
        sampling = {"temperature": d.temperature, "top_p": d.top_p} if d.do_sample else {}
        for s in range(0, len(order), d.batch_size):
            idx = order[s : s + d.batch_size]
            width = max(len(prompts[i]) for i in idx)
            # left padding: every prompt ends at column `width`, where generation starts
            x = torch.tensor([[self.pad] * (width - len(prompts[i])) + prompts[i] for i in idx])
            mask = torch.tensor(
                [[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx]
            )
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
                out[i] = Generation(
                    tokens=row if stop is None else row[:stop],
                    stopped=stop is not None,
                    truncated=stop is None and len(row) >= d.max_new_tokens,
                    latency_ms=ms,
                )
        return out


# draft.engine -> engine stage (radgpt.config.DraftCfg.engine lists the same names)
ENGINES: dict[str, type] = {"transformers": HFEngine}


def draft_row(
    spec: ModelSpec, report: dict, out: dict, flags: list[str], run: dict, host: str, now
) -> dict:
    """One drafts table row (schemas/drafts.json): the report's ids, the draft, its provenance.

    `report` has the columns radgpt.draft.run.select keeps (+ draft_id); `out` is a Postprocess output; `run` has run_id and
    run_date. The batch path and `radgpt serve` both build their drafts here (a serve request has
    no exam: its exam columns are null).
    """
    return {  # in the schema's column order
        **{k: report[k] for k in ("draft_id", "report_id", "source", "patient_id", "study_id")},
        **{k: report.get(k) for k in ("exam_time", "exam", "exam_code", "accession")},
        "draft": out["draft"],
        "flags": flags,
        "base_model": spec.base_model,
        "base_model_sha256": spec.base_model_sha256,
        "adapter_id": spec.adapter_id,
        "adapter_version": spec.adapter_version,  # the model registry version, if one
        "prompt_name": spec.prompt_name,
        "prompt_version": spec.prompt_version,
        "generation": spec.generation,
        "source_sha256": report["source_sha256"],
        "findings_sha256": text_sha256(report["findings"]),
        "run_id": run["run_id"],
        "code_version": code_version(),
        "worker_host": host,
        "generated_at": now,
        "prompt_tokens": out["prompt_tokens"],
        "output_tokens": out["output_tokens"],
        "latency_ms": out["latency_ms"],
        "run_date": run["run_date"],
    }


class Postprocess:
    """Generations -> drafts (decoded, stripped) -> review flags + provenance: drafts rows."""

    def __init__(self, spec: ModelSpec, tokenizer, run: dict | None = None):
        from radgpt.model import prompts

        self.spec, self.tok, self.run = spec, tokenizer, run or {}
        self.instruction = prompts.instruction(spec.task)
        self.host = socket.gethostname()

    def outputs(self, prompts: list[list[int]], gens: list[Generation]) -> list[dict]:
        """Per report: {draft, prompt_tokens, output_tokens (incl. the stop), truncated, latency_ms}."""
        return [
            {
                "draft": self.tok.decode(g.tokens, skip_special_tokens=True).strip(),
                "prompt_tokens": len(p),
                "output_tokens": len(g.tokens) + g.stopped,
                "truncated": g.truncated,
                "latency_ms": g.latency_ms,
            }
            for p, g in zip(prompts, gens, strict=True)
        ]

    def flags(self, findings: str, out: dict) -> list[str]:
        return review_flags(
            findings, out["draft"], truncated=out["truncated"], instruction=self.instruction
        )

    def rows(self, reports: list[dict], outs: list[dict]) -> list[dict]:
        """Drafts table rows for selected reports and their outputs."""
        now = utcnow()
        return [
            draft_row(self.spec, r, o, self.flags(r["findings"], o), self.run, self.host, now)
            for r, o in zip(reports, outs, strict=True)
        ]
