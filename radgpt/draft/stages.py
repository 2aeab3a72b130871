"""Drafting as three stages, as ray.data.llm's processors: preprocess -> engine -> postprocess.

    pre = Preprocess(spec, tok, max_new_tokens, cfg.draft)  # neighbours + template: token ids
    prompts, nb = pre(findings, report_ids)        # ids; the rerank neighbours' Impressions
    gens = HFEngine(spec, cfg)(prompts, pre.branches(findings))  # Generation per prompt
    outs = post.outputs(prompts, gens, findings, nb)  # decode, rerank, clean: {draft, ...}
    rows = post.rows(reports, outs)                # review flags + provenance: drafts table rows

radgpt.draft.drafter wraps them for Ray Data: Prompter (Preprocess: CPU actors) adds the prompt
ids and branch counts to each report row; Drafter (engine + Postprocess: the model's actors) turns
those rows into drafts rows; Drafter.generate runs all three in one process (serve, in-process
drafts). `draft.engine` picks the engine stage from ENGINES; an engine takes the prompts' token
ids and gives, in input order, what it generated for each (the tokens before the stop token);
with n-best decoding (draft.n_best > 1) also the other candidates of the prompts that branch
(Preprocess.branches: every report when the reranker compares candidates with the retrieved
neighbours' Impressions, draft.rerank_neighbours; else those whose Findings state a
usually-carried finding). Postprocess keeps one candidate (radgpt.draft.nbest.rerank), cleans
it (radgpt.draft.clean, draft.clean) and flags it (radgpt.draft.flags.review: the text guards,
omits_finding / adds_finding with the carry rates of radgpt.model.carry, reads_normal with its
abnormal model).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from radgpt.config import Config, DraftCfg
from radgpt.draft import flags
from radgpt.model.ids import text_sha256
from radgpt.model.spec import ModelSpec
from radgpt.runtime import code_version, utcnow


class Preprocess:
    """Findings -> prompt token ids, built as in training (template, task, cutoff_len, examples),
    the Impressions the n-best reranker compares candidates with (the retrieval's nearest
    draft.rerank_neighbours, the prompt's examples first) and the n-best branches each report
    gets (branches)."""

    def __init__(
        self, spec: ModelSpec, tokenizer, max_new_tokens: int, draft: DraftCfg = None, usual=None
    ):
        from radgpt.model import prompts

        self.spec, self.tok = spec, tokenizer
        d = draft or DraftCfg()  # finding-aware retrieval (0 = plain TF-IDF, as in training)
        self.n_best = d.n_best
        self.k_neighbours = spec.rerank_neighbours[0]  # 0: the reranker ignores wording
        # the observations n-best branches on: `usual` when given (a Drafter passes its
        # Postprocess's: the carry rates load once), else the run's carry rates
        if usual is None and d.n_best > 1:
            usual = carried(spec, d)
        self.usual = usual
        self.aware = {"finding_weight": d.retrieval_finding_weight, "pool": d.retrieval_pool}
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

    def __call__(
        self, findings: list[str], report_ids: list[str | None]
    ) -> tuple[list[list[int]], list[list[str]]]:
        """(token ids per report, its rerank neighbours' Impressions: [] when off); a report is
        never its own retrieved example. One query serves both: the prompt takes the first
        retrieval_k (with finding-aware retrieval a pool under rerank_neighbours widens to it)."""
        k, kn = self.spec.retrieval_k, self.k_neighbours
        ex = (
            self.retriever.query(findings, max(k, kn), exclude_ids=report_ids, **self.aware)
            if self.retriever
            else [()] * len(findings)
        )
        t = self.spec.task
        ids = [
            self.tpl.fit(self.tok, t, f, e[:k], self.budget)[0]
            for f, e in zip(findings, ex, strict=True)
        ]
        return ids, [[imp for _, imp in e[:kn]] for e in ex]

    def branches(self, findings: list[str]) -> list[int] | None:
        """n-best branches per report: draft.n_best for every report when the reranker compares
        with neighbours (it always has wording to prefer), else where the Findings state a
        usually-carried finding, 1 for the rest; None when n-best is off."""
        n = self.n_best
        if n <= 1:
            return None
        if self.k_neighbours:
            return [n] * len(findings)
        return [n if c else 1 for c in self.carries(findings)]

    def carries(self, findings: list[str]) -> list[bool]:
        """Per report: do its Findings state a usually-carried finding?"""
        from radgpt.model.carry import findings_labels, positives

        return [bool(positives(findings_labels(f)) & self.usual) for f in findings]


def carried(spec: ModelSpec, draft: DraftCfg) -> frozenset[str]:
    """The observations radiologists usually carry into the Impression (carry rate >=
    draft.carry_threshold): n-best branches on them, the reranker rewards them, omits_finding
    checks them."""
    return carry_rates(spec).usual(draft.carry_threshold)


def carry_rates(spec: ModelSpec):
    """The run's carry rates and reads_normal model (radgpt.model.carry), digest-checked."""
    from radgpt.model.carry import CarryRates

    carry = CarryRates.for_adapter(spec.adapter_dir, spec.retrieval_table)
    if spec.carry_digest and carry.digest != spec.carry_digest:  # changed since the run began
        raise RuntimeError(f"carry rates {carry.digest} != {spec.carry_digest}")
    return carry


@dataclass(frozen=True)
class Generation:
    """What an engine generated for one prompt."""

    tokens: list[int]  # generated ids before the stop token
    stopped: bool  # ended on a stop (EOS) token
    truncated: bool  # hit max_new_tokens before a stop token
    latency_ms: float  # the per-report share of its generate batch's wall time
    # n-best: every candidate as (tokens, sum of token log-probs, stopped); () = greedy only
    candidates: tuple = ()


def stop_ids(tokenizer, spec: ModelSpec, generation_eos=None) -> list[int]:
    """The token ids drafting stops on: the tokenizer's EOS, the one the adapter was trained to
    end with (spec.eos_token_id), the generation config's (an id or a list) and every other
    special token of the tokenizer (SmolLM2: <|endoftext|>, <|im_start|>, <|im_end|>). Tokenizers
    of one GGUF differ across transformers versions (EOS <|im_start|> or <|im_end|>), so an
    adapter may end on either; a control token is never Impression text, and decoding drops it:
    past one, a draft would run on into the template's next turn ("...disease.user").
    """
    g = generation_eos
    eos = {tokenizer.eos_token_id, spec.eos_token_id, *tokenizer.all_special_ids}
    eos |= set(g if isinstance(g, list) else [g] if g is not None else [])
    return sorted(e for e in eos if e is not None)


class HFEngine:
    """Length-sorted, left-padded batches of draft.batch_size: greedy (and n-best) decoding by
    radgpt.draft.nbest.branch_decode, whose rows leave the batch as they stop (transformers
    `generate` decodes a batch until its longest draft stops); `generate` when draft.do_sample.

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
            dtype=spec.dtype or cfg.model.dtype,  # resolved once per run (ModelSpec.resolve)
            device=self.device,
        )
        self.eos = stop_ids(self.tokenizer, spec, self.model.generation_config.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else self.eos[0]

    def __call__(
        self, prompts: list[list[int]], branches: list[int] | None = None
    ) -> list[Generation]:
        """One Generation per prompt, in input order; branches[i] > 1: n-best candidates too."""
        import torch

        d = self.draft
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # length-sorted
        out: list[Any] = [None] * len(prompts)
        sampling = {"temperature": d.temperature, "top_p": d.top_p} if d.do_sample else {}
        for s in range(0, len(order), d.batch_size):
            idx = order[s : s + d.batch_size]
            if not d.do_sample:
                self._decode(prompts, branches, idx, out)
                continue
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

    def _decode(self, prompts, branches, idx, out) -> None:
        """One greedy batch (radgpt.draft.nbest.branch_decode: rows leave the batch as they stop),
        n-best by first-token branching where branches[i] > 1; candidate 0 is greedy."""
        from radgpt.draft.nbest import branch_decode

        d = self.draft
        t0 = time.perf_counter()
        n = [branches[i] for i in idx] if branches else [1] * len(idx)
        cands = branch_decode(self.model, [prompts[i] for i in idx], n,
                              pad=self.pad, eos=self.eos, max_new_tokens=d.max_new_tokens)  # fmt: skip
        ms = (time.perf_counter() - t0) * 1000 / len(idx)
        for i, cs in zip(idx, cands, strict=True):
            toks, _, stopped = cs[0]
            out[i] = Generation(toks, stopped, not stopped and len(toks) >= d.max_new_tokens, ms,
                                tuple(cs) if len(cs) > 1 else ())  # fmt: skip


# draft.engine -> engine stage (radgpt.config.DraftCfg.engine lists the same names)
ENGINES: dict[str, type] = {"transformers": HFEngine}


def draft_row(
    spec: ModelSpec, report: dict, out: dict, flags: list[str], run: dict, host: str, now,
    observations: list[str] = (),
) -> dict:  # fmt: skip
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
        "flag_observations": list(observations),
        "draft_raw": out.get("draft_raw"),
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
    """Generations -> one draft each (decoded, n-best reranked, cleaned) -> review flags +
    provenance: drafts rows. draft: the run's DraftCfg (clean, carry_threshold, n_best, rerank)."""

    def __init__(self, spec: ModelSpec, tokenizer, run: dict | None = None, draft: DraftCfg = None):
        from radgpt.draft.clean import CLEANERS
        from radgpt.model import prompts

        self.spec, self.tok, self.run = spec, tokenizer, run or {}
        self.draft = d = draft or DraftCfg()
        self.instruction = prompts.instruction(spec.task)
        self.host = socket.gethostname()
        self.clean = CLEANERS[d.clean]
        self.rates = carry_rates(spec)
        self.usual = self.rates.usual(d.carry_threshold)
        self.neighbour_weight = spec.rerank_neighbours[1]  # 0.0: wording not weighed

    def _text(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens, skip_special_tokens=True).strip()

    def outputs(
        self,
        prompts: list[list[int]],
        gens: list[Generation],
        findings: list[str] | None = None,
        neighbours: list[list[str]] | None = None,
    ) -> list[dict]:
        """Per report: {draft, draft_raw (the generation when cleaning changed it, else None),
        prompt_tokens, output_tokens (incl. the stop), truncated, latency_ms}. n-best candidates
        are reranked with the report's Findings and neighbours' Impressions (Preprocess)."""
        out = []
        for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
            toks, stopped, truncated = g.tokens, g.stopped, g.truncated
            if g.candidates and findings is not None:
                toks, stopped = self._pick(
                    findings[i], g.candidates, neighbours[i] if neighbours else ()
                )
                truncated = not stopped and len(toks) >= self.draft.max_new_tokens
            raw = self._text(toks)
            text = self.clean(raw)
            out.append({
                "draft": text,
                "draft_raw": raw if raw != text else None,
                "prompt_tokens": len(p),
                "output_tokens": len(toks) + stopped,
                "truncated": truncated,
                "latency_ms": g.latency_ms,
            })  # fmt: skip
        return out

    def _pick(self, findings: str, cands, neighbours=()) -> tuple[list[int], bool]:
        from radgpt.draft.nbest import rerank
        from radgpt.model.carry import findings_labels

        texts = [self.clean(self._text(t)) for t, _, _ in cands]
        i = rerank(texts, [lp for _, lp, _ in cands], [len(t) + s for t, _, s in cands],
                   findings_labels(findings), self.usual, self.draft.rerank_weight,
                   [s for _, _, s in cands], neighbours, self.neighbour_weight)  # fmt: skip
        return cands[i][0], cands[i][2]

    def review(self, findings: str, out: dict) -> flags.Review:
        ab = self.rates.reads_abnormal([findings], self.draft.abnormal_threshold)[0]
        return flags.review(findings, out["draft"], truncated=out["truncated"],
                            instruction=self.instruction, usual=self.usual, abnormal=ab)  # fmt: skip

    def flags(self, findings: str, out: dict) -> list[str]:
        return self.review(findings, out).flags

    def rows(self, reports: list[dict], outs: list[dict]) -> list[dict]:
        """Drafts table rows for selected reports and their outputs."""
        now = utcnow()
        rows = []
        for r, o in zip(reports, outs, strict=True):
            rv = self.review(r["findings"], o)
            rows.append(draft_row(self.spec, r, o, rv.flags, self.run, self.host, now,
                                  rv.observations))  # fmt: skip
        return rows
