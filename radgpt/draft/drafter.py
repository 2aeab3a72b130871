"""Drafting's Ray Data callables: Prompter (preprocess) -> Drafter (engine + postprocess).

    from radgpt.draft.drafter import Drafter, Prompter, adapter_dir, generate
    from radgpt.model.spec import ModelSpec
    generate(cfg, ["The heart is normal ..."], adapter=None)     # in-process greedy drafts
    spec = ModelSpec.resolve(cfg, adapter_dir(cfg))               # once per run
    p = Prompter(cfg.to_json(), spec.to_json())                   # a CPU actor of the batch path
    d = Drafter(cfg.to_json(), spec.to_json(), run, prompts=False)  # a model actor
    d(p(selected))                                  # radgpt.draft.run.select rows -> drafts rows
    Drafter(cfg.to_json(), spec.to_json()).generate(["..findings.."])  # [{"draft": ..., ...}]

The stages are radgpt.draft.stages'. Prompter holds the tokenizer and the retriever and adds to
each report row its prompt token ids (prompts built exactly as in training: Template.fit with the
adapter's template, task, cutoff_len and retrieved neighbours when its record says
retrieval_k > 0) and its n-best branch count (PROMPT_COLUMNS). Drafter loads the model once (the
engine stage, draft.engine), drafts length-sorted, left-padded batches of those rows (greedy by
default, at most draft.max_new_tokens, stop at EOS) and postprocesses them into drafts rows.
radgpt.draft.run runs the two as consecutive Ray Data actor pools, so prompts for the next
batches are built while the model generates, or both in sequence in process; Drafter.generate
(radgpt.draft.serve, generate()) builds prompts with the same Preprocess in its own process.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from radgpt.config import HOME, Config
from radgpt.draft.stages import ENGINES, Postprocess, Preprocess
from radgpt.model.spec import ModelSpec
from radgpt.schema import arrow_schema

# what Prompter adds to a report row: the prompt's token ids; n-best branches (1 = greedy); the
# Impressions of the neighbours the n-best reranker compares with ([] when off)
PROMPT_COLUMNS = {
    "prompt_ids": pa.list_(pa.int32()),
    "branches": pa.int32(),
    "neighbours": pa.list_(pa.string()),
}


def adapter_dir(cfg: Config, adapter: str | bool | None = True) -> Path | None:
    """True: cfg.model.adapter; None/False: base model only; a str: that adapter dir (or a
    registry version, "registry:champion"). The directory only: adapter_source gives its registry
    version too.

    A named adapter that is not there is an error saying what to set (never a silent fallback to
    the base model: drafting with the base alone is `model.adapter: null`)."""
    return adapter_source(cfg, adapter)[0]


def adapter_source(
    cfg: Config, adapter: str | bool | None = True
) -> tuple[Path | None, str | None]:
    """(adapter dir, its model registry version "models:/<model>/<n>" or None for a path).

    With registry.champion_drafts (and adapter True), the registry's champion when it has one;
    "registry:<alias or version>" resolves there (radgpt.model.registry), else it is a path."""
    from radgpt.model import registry

    raw = cfg.model.adapter if adapter is True else (adapter or None)
    if adapter is True and cfg.registry.champion_drafts:
        got = registry.lookup(cfg, "champion")
        if got is not None:
            return got.dir, got.uri
    if not raw:
        return None, None
    if registry.is_ref(raw):
        got = registry.resolve(cfg, raw)
        return got.dir, got.uri
    p = cfg.model_path(raw)
    if not p.is_dir():
        raise FileNotFoundError(
            f"adapter directory not found: {p} (model.adapter={raw!r}; relative paths resolve "
            f"against {HOME}): point model.adapter (or --adapter) at a `radgpt train` output such as "
            "the shipped models/iu-default, or set it to null (--adapter none) to draft with the "
            "base model alone"
        )
    return p, None


def _spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else ModelSpec.from_json(spec)


class Prompter:
    """The preprocess stage as a Ray Data callable class: selected reports (radgpt.draft.run.select
    columns) -> the same rows + PROMPT_COLUMNS. Loads the tokenizer (the one the engine loads:
    radgpt.model.base.weights_dirs) and the retriever once; no model, no torch threads.

    cfg_json: Config.to_json(); spec: a ModelSpec or its to_json().
    """

    def __init__(self, cfg_json: str, spec: ModelSpec | str):
        from radgpt.model.base import load_tokenizer, weights_dirs

        self.cfg = Config.from_json(cfg_json)
        self.spec = _spec(spec)
        tok = load_tokenizer(weights_dirs(self.spec.base_model, self.spec.adapter_dir)[0])
        d = self.cfg.draft
        self.preprocess = Preprocess(self.spec, tok, d.max_new_tokens, d)

    def __call__(self, batch: pa.Table) -> pa.Table:
        findings = batch.column("findings").to_pylist()
        ids, nb = self.preprocess(findings, batch.column("report_id").to_pylist())
        n = self.preprocess.branches(findings) or [1] * len(findings)  # None: n-best is off
        for name, v in (("prompt_ids", ids), ("branches", n), ("neighbours", nb)):
            batch = batch.append_column(name, pa.array(v, PROMPT_COLUMNS[name]))
        return batch


class Drafter:
    """The engine and postprocess stages, loaded once; a Ray Data callable class (rows from
    Prompter -> drafts rows), and generate() for Findings alone (all three stages here).

    cfg_json: Config.to_json(); spec: a ModelSpec or its to_json() (how it crosses into a Ray
    actor); run: {"run_id", "run_date"} of the rows it drafts, given by a Ray actor or serve
    (whose CPU torch threads are then capped at draft.threads_per_actor / cpus_per_actor);
    prompts: build a Preprocess for generate() (False in the batch path, whose rows carry their
    prompt ids: the retriever is then not loaded here).
    """

    def __init__(
        self, cfg_json: str, spec: ModelSpec | str, run: dict | None = None, prompts: bool = True
    ):
        self.cfg = Config.from_json(cfg_json)
        self.spec = _spec(spec)
        self.run = run or {}
        d = self.cfg.draft
        threads = (d.threads_per_actor or max(1, int(d.cpus_per_actor))) if run else None
        self.engine = ENGINES[d.engine](self.spec, self.cfg, threads=threads)
        self.postprocess = post = Postprocess(self.spec, self.engine.tokenizer, self.run, d)
        self.preprocess = (
            Preprocess(self.spec, self.engine.tokenizer, d.max_new_tokens, d, usual=post.usual)
            if prompts
            else None
        )

    def draft(
        self,
        ids: list[list[int]],
        branches: list[int] | None,
        findings: list[str],
        neighbours: list[list[str]] | None = None,
    ) -> list[dict]:
        """Engine + postprocess: {draft, draft_raw, prompt_tokens, output_tokens, truncated,
        latency_ms} per prompt, in input order."""
        return self.postprocess.outputs(ids, self.engine(ids, branches), findings, neighbours)

    def generate(
        self, findings: list[str], report_ids: list[str | None] | None = None
    ) -> list[dict]:
        """Drafts in input order (as draft()), prompts built here."""
        ids, nb = self.preprocess(findings, report_ids or [None] * len(findings))
        return self.draft(ids, self.preprocess.branches(findings), findings, nb)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Selected reports with PROMPT_COLUMNS (Prompter's rows) -> drafts table rows."""
        rows = batch.to_pylist()
        outs = self.draft(*([r[c] for r in rows] for c in ("prompt_ids", "branches", "findings",
                                                              "neighbours")))  # fmt: skip
        return pa.Table.from_pylist(
            self.postprocess.rows(rows, outs), schema=arrow_schema("drafts")
        )


_CACHED: dict = {}


def generate(cfg: Config, findings: list[str], adapter: str | None | bool = True) -> list[str]:
    """In-process greedy drafts (no Ray) for a list of Findings, in order."""
    a = adapter_dir(cfg, adapter)
    key = (cfg.hash(), str(a))
    if key not in _CACHED:
        _CACHED.clear()  # one model in memory at a time
        _CACHED[key] = Drafter(cfg.to_json(), ModelSpec.resolve(cfg, a))
    return [o["draft"] for o in _CACHED[key].generate(list(findings))]
