"""Config sections of the drafting wing: batch drafting (draft.*) and the HTTP service (serve.*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from radgpt.config.sections import _Cfg


class DraftCfg(_Cfg):
    selection: Literal["new", "missing", "split", "all"] = Field(
        default="new",
        description="reports drafted: new = eligible or Impression-less reports with Findings and "
        "no committed draft of this draft_id (re-runs are idempotent); missing = no Impression "
        "but Findings; split = the splits in `split`; all (docs/drafting.md)",
    )
    split: str | None = Field(
        default=None,
        description='selection=split: a comma list of splits, e.g. "validate,test" (`radgpt '
        "draft --split` sets both); null = none",
    )
    limit: int | None = Field(
        default=96,
        ge=1,
        description="reports drafted per run (by report_id); the rest wait for the next night. 96 "
        "fits a night on 2 CPU cores; null = all",
    )
    engine: Literal["transformers"] = Field(
        default="transformers",
        description="engine stage that generates (radgpt.draft.stages.ENGINES); transformers is "
        "the one there is",
    )
    executor: Literal["auto", "ray", "local"] = Field(
        default="auto",
        description="where the drafting stages run: ray = a Ray Data actor pool (num_actors x "
        "cpus_per_actor/gpus_per_actor, a dead actor's reports redrafted by a fresh pool); local "
        "= in this process, no Ray (no Ray start, no actor start: less fixed cost and memory for "
        "a small night); auto = local when no Ray cluster is configured (ray.address, "
        "RAY_ADDRESS) and at most local_max_reports reports are selected, else ray. Both give "
        "the same drafts. On 2 CPU cores, 60 reports: local 1.7x Ray's speed end to end, 1.6 GB "
        "process tree vs 3.4 GB (docs/benchmarks.md)",
    )
    local_max_reports: int = Field(
        default=400,
        ge=0,
        description="executor=auto: the largest selection drafted in process (docs/drafting.md)",
    )
    progress_every_s: float = Field(
        default=30,
        ge=0,
        description="when stderr is not a terminal, a progress line (INFO) at most this often, "
        "in seconds, and one at the end; 0 = after every batch. On a terminal: a progress bar",
    )
    max_new_tokens: int = Field(
        default=96,
        ge=1,
        description="most tokens generated per draft; a draft that hits it is flagged truncated",
    )
    batch_size: int = Field(
        default=8, ge=1, description="reports per generation batch (and per Ray Data block)"
    )
    num_actors: int = Field(
        default=1, ge=1, description="executor=ray: drafting actors (the Ray Data pool's size)"
    )
    cpus_per_actor: float = Field(
        default=1, gt=0, description="Ray's CPU reservation per drafting actor (and serve replica)"
    )
    threads_per_actor: int | None = Field(
        default=2,
        ge=1,
        description="torch threads of a CPU actor (and of executor=local); null = cpus_per_actor. "
        "More threads than reserved CPUs is fine when the actor is the only heavy work (the "
        "selection's read tasks are short). 2 = both cores of the embedded default's machine "
        "(1.5x reports/s, docs/benchmarks.md)",
    )
    gpus_per_actor: float = Field(
        default=0,
        ge=0,
        description="Ray's GPU reservation per drafting actor (and serve replica); 0 = CPU",
    )
    preprocess_actors: int = Field(
        default=1,
        ge=1,
        description="executor=ray: actors of the preprocess stage (radgpt.draft.drafter."
        "Prompter: retrieval, prompt template, tokenizer), a Ray Data pool ahead of the "
        "num_actors drafting actors; more when one cannot keep the GPUs fed",
    )
    preprocess_cpus: float = Field(
        default=0,
        ge=0,
        description="Ray CPUs reserved per preprocess actor; 0 = none: it shares the CPU left to "
        "Ray Data's read tasks, which take a whole CPU each (on 2 cores with cpus_per_actor 1 any "
        "reservation starves them: the run refuses it). On a bigger machine, e.g. 1",
    )
    merge_adapter: bool = Field(
        default=True,
        description="merge the LoRA weights into the base at load (radgpt.model.base.load); "
        "false = keep the PEFT adapter layers",
    )
    do_sample: bool = Field(
        default=False,
        description="sample (temperature, top_p; HF generate) instead of greedy and n-best "
        "decoding",
    )
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature (do_sample)")
    top_p: float = Field(
        default=1.0, gt=0, le=1, description="nucleus sampling probability mass (do_sample)"
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        description="executor=ray: when an actor dies, fresh pools draft the reports that did "
        "not come back, at most this many times; 0 = fail",
    )
    lock_wait_s: float = Field(
        default=300,
        ge=0,
        description="seconds a run's commit waits for another drafting run's commit to the "
        "drafts table (<drafts>/_lock); 0 = fail at once",
    )
    carry_threshold: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="omits_finding flags a Findings observation missing from the draft when "
        "radiologists carry it into the Impression at least this often (radgpt.model.carry "
        "rates of the train split); the n-best reranker rewards the same observations. Higher = "
        "fewer observations checked, 1 = off. Tuned on the IU validate split (docs/drafting.md)",
    )
    abnormal_threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="reads_normal flags a draft that reads normal when P(the radiologist's "
        "Impression states a pathology | Findings) is at least this (radgpt.model.abnormal, "
        "learned with the carry rates; trained with balanced classes: 0.5 is its decision "
        "boundary). Lower = more flags, 1 = off (docs/drafting.md)",
    )
    retrieval_finding_weight: float = Field(
        default=0.0,
        ge=0,
        description="finding-aware retrieval: the retrieval_pool nearest train reports (TF-IDF) "
        "are re-ranked by cosine + this x the share of the report's positive observations their "
        "Findings state too; 0 = plain TF-IDF, as in training",
    )
    retrieval_pool: int = Field(
        default=20, ge=1, description="candidates finding-aware retrieval re-ranks"
    )
    n_best: int = Field(
        default=4,
        ge=1,
        le=16,
        description="first-token branches per report (radgpt.draft.nbest: one shared prompt "
        "prefill, greedy continuations); the reranker keeps one. Every report branches when "
        "rerank_neighbours is on, else only those whose Findings state a usually-carried "
        "finding. 1 = greedy decoding only",
    )
    rerank_weight: float = Field(
        default=2.0,
        ge=0,
        description="n-best reranker: mean token log-prob + this x (usually-carried Findings "
        "observations the candidate states - findings it adds) + rerank_neighbour_weight x "
        "agreement with the neighbours. Above rerank_neighbour_weight, a carried finding "
        "always outweighs wording (tuned on the IU validate split: docs/training.md)",
    )
    rerank_neighbours: int = Field(
        default=10,
        ge=0,
        le=50,
        description="n-best reranker: the retrieved train reports (the prompt's examples first) "
        "whose Impressions each candidate is compared to, mean ROUGE-1 F1: the wording "
        "radiologists used for similar Findings. Needs an adapter with retrieval (retrieval_k "
        "> 0); 0 = off",
    )
    rerank_neighbour_weight: float = Field(
        default=1.0,
        ge=0,
        description="n-best reranker: weight of the agreement with the neighbours' Impressions "
        "(0-1 each); 0 = off",
    )
    clean: Literal["clean-v1", "none"] = Field(
        default="clean-v1",
        description="postprocess cleaning of the generated text (radgpt.draft.clean: stray "
        "punctuation, empty sentences); the raw text is kept in drafts.draft_raw when it changed",
    )


class ServeCfg(_Cfg):
    host: str = Field(
        default="127.0.0.1",
        description="address `radgpt serve` binds (`--host`); 127.0.0.1 = this machine only",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port (`--port`)")
    max_body_bytes: int = Field(
        default=262_144,
        ge=1024,
        description="larger request bodies get 413 before they are read (Content-Length, or "
        "counted as they come)",
    )
    max_batch_size: int = Field(
        default=8, ge=1, description="concurrent requests drafted together in one batch"
    )
    batch_wait_timeout_s: float = Field(
        default=0.05, ge=0, description="seconds a batch waits to fill before it is drafted"
    )
