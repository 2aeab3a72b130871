"""The Drafter: preprocess -> engine -> postprocess (radgpt.draft.stages) in one process.

    from radgpt.draft.drafter import Drafter, adapter_dir, generate
    from radgpt.model.spec import ModelSpec
    generate(cfg, ["The heart is normal ..."], adapter=None)     # in-process greedy drafts
    spec = ModelSpec.resolve(cfg, adapter_dir(cfg))               # once per run
    d = Drafter(cfg.to_json(), spec.to_json())                    # what each Ray actor holds
    d.generate(["..findings.."])                                  # [{"draft": ..., ...}]

The Drafter loads the model once (the engine stage, draft.engine) and drafts length-sorted,
left-padded batches: greedy by default, at most draft.max_new_tokens, stop at EOS. Prompts are
built exactly as in training (radgpt.model.prompts Template.fit with the adapter's template, task,
cutoff_len and retrieved neighbours when its record says retrieval_k > 0). radgpt.draft.run runs it
as a Ray Data actor pool; radgpt.draft.serve runs it behind HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from radgpt.config import HOME, Config
from radgpt.draft.stages import ENGINES, Postprocess, Preprocess
from radgpt.model.spec import ModelSpec
from radgpt.schema import arrow_schema


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


class Drafter:
    """The three drafting stages, loaded once; a Ray Data callable class.

    cfg_json: Config.to_json(); spec: a ModelSpec or its to_json() (how it crosses into a Ray
    actor); run: {"run_id", "run_date"} of the rows it drafts, given by a Ray actor or serve
    (whose CPU torch threads are then capped at draft.threads_per_actor / cpus_per_actor).
    """

    def __init__(self, cfg_json: str, spec: ModelSpec | str, run: dict | None = None):
        self.cfg = Config.from_json(cfg_json)
        self.spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_json(spec)
        self.run = run or {}
        d = self.cfg.draft
        threads = (d.threads_per_actor or max(1, int(d.cpus_per_actor))) if run else None
        self.engine = ENGINES[d.engine](self.spec, self.cfg, threads=threads)
        self.preprocess = Preprocess(self.spec, self.engine.tokenizer, d.max_new_tokens, d)
        self.postprocess = Postprocess(self.spec, self.engine.tokenizer, self.run, d)

    def generate(
        self, findings: list[str], report_ids: list[str | None] | None = None
    ) -> list[dict]:
        """Drafts in input order: {draft, draft_raw, prompt_tokens, output_tokens, truncated,
        latency_ms}."""
        ids = self.preprocess(findings, report_ids or [None] * len(findings))
        gens = self.engine(ids, self.postprocess.branches(findings))
        return self.postprocess.outputs(ids, gens, findings)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Selected reports (radgpt.draft.run.select columns) -> drafts table rows."""
        rows = batch.to_pylist()
        outs = self.generate([r["findings"] for r in rows], [r["report_id"] for r in rows])
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
