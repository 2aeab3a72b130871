"""Batch drafting: select reports -> Prompter -> Drafter (Ray Data actor pools, or in process) -> commit.

    radgpt draft --config conf/local.yaml [--data DIR] [--adapter DIR] [--split NAME] [--limit N] [--out DIR]

    from radgpt.draft.run import run_draft
    run_draft(load_config(path, {"draft.selection": "split", "draft.split": "test"}))  # a summary

The run resolves one radgpt.model.spec.ModelSpec and drafts in two stages
(radgpt.draft.drafter): Prompter, the CPU preprocess (retrieval, prompt template, tokenizer: the
prompt token ids and n-best branch count of each report), then Drafter, the engine (the model,
loaded once; greedy by default, stop at EOS) and the postprocess (rerank, clean, review flags:
drafts rows). draft.executor chooses where: on Ray Data (ray) the selection streams through a
pool of draft.preprocess_actors Prompters into a pool of draft.num_actors Drafters, so prompts for
the next batches are built while the model generates; in this process (local: no Ray, less fixed
cost for a small night) the same two run batch by batch; auto = local without a Ray cluster for at
most draft.local_max_reports reports. Both give the same drafts. Progress: one indicator
(radgpt.draft.progress), updated batch by batch.
Fault tolerance (ray): when an actor dies, fresh pools draft the reports that did not come back
(draft.max_retries times); drafts are keyed by a deterministic draft_id, so the commit keeps every
selected report exactly once.
The selection (Findings text) lives in <paths.runs>/<run_id>/ only while the run does: removed on
every way out (SIGTERM included: radgpt.exits.exit_on_sigterm); a run killed outright
(SIGKILL) leaves it to the next run, which removes the folders of runs no longer alive (each
live run holds its folder's lock).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radgpt.config import Config, ConfigError
from radgpt.draft.drafter import Drafter, Prompter, adapter_source
from radgpt.draft.progress import Progress
from radgpt.model.spec import ModelSpec
from radgpt.runtime import new_run_id, utcnow
from radgpt.schema import arrow_schema

log = logging.getLogger("radgpt.draft.run")
KEEP = ["report_id", "source", "patient_id", "study_id", "exam_time", "exam", "exam_code", "accession",
        "findings", "source_sha256"]  # fmt: skip


def _blank(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col.fill_null(""))), 0)


def select(
    reports: pa.Table, cfg: Config, spec: ModelSpec, done: set[str] = frozenset()
) -> pa.Table:
    """Reports to draft per draft.selection, with their draft_id, sorted by Findings length.

    `reports` is the current view (radgpt.table.read_reports: the latest version of each report);
    a corrected report's draft_id covers its new Findings (ModelSpec.draft_id), so `new` drafts it
    again while the ids of reports never corrected stay as they were.
    new: eligible or impression-less reports without a committed draft for this draft_id;
    missing: no Impression but Findings; split: the comma list draft.split; all: every report with Findings.
    """
    mode = cfg.draft.selection
    has_f = pc.invert(_blank(reports.column("findings")))
    if mode == "missing":
        mask = pc.and_(has_f, _blank(reports.column("impression")))
    elif mode == "split":
        if not cfg.draft.split:
            raise ConfigError("draft.split: required when draft.selection=split")
        splits = pa.array([x.strip() for x in cfg.draft.split.split(",")], pa.string())
        mask = pc.and_(has_f, pc.is_in(reports.column("split"), value_set=splits))
    elif mode == "new":
        mask = pc.and_(
            has_f, pc.or_(reports.column("eligible"), _blank(reports.column("impression")))
        )
    else:
        mask = has_f
    t = reports.filter(mask)
    vs = t.column("version").to_pylist() if "version" in t.column_names else [None] * len(t)
    f = t.column("findings")  # read per row for later versions only
    ids = [
        spec.draft_id(r, v, f[i].as_py() if v and v > 1 else None)
        for i, (r, v) in enumerate(zip(t.column("report_id").to_pylist(), vs, strict=True))
    ]
    t = t.select(KEEP)
    t = t.append_column("draft_id", pa.array(ids, pa.string()))
    if mode == "new" and done:
        t = t.filter(pc.invert(pc.is_in(t.column("draft_id"), pa.array(sorted(done)))))
    t = t.sort_by("report_id")
    if cfg.draft.limit:
        t = t.slice(0, cfg.draft.limit)
    n = pc.utf8_length(t.column("findings"))
    return t.append_column("_len", n).sort_by([("_len", "ascending")]).drop_columns(["_len"])


def _check_cpus(cfg: Config, ray) -> None:
    """Refuse actor pools that leave Ray Data's read tasks less than one CPU: each takes a whole
    one (reads, file listing, the repartition), so the job would hang waiting for it."""
    d = cfg.draft
    total = ray.cluster_resources().get("CPU", 0)
    pools = d.num_actors * d.cpus_per_actor + d.preprocess_actors * d.preprocess_cpus
    if total - pools < 1 and not d.gpus_per_actor:
        raise ConfigError(
            f"draft.num_actors x draft.cpus_per_actor + draft.preprocess_actors x "
            f"draft.preprocess_cpus = {pools:g} of the Ray cluster's {total:g} CPUs leaves "
            f"{total - pools:g}: Ray Data read tasks take 1 each and would starve; lower it"
        )


def executor(cfg: Config, selected: int) -> str:
    """ "ray" or "local" per draft.executor; auto: local without a Ray cluster to join
    (ray.address, RAY_ADDRESS) when at most draft.local_max_reports reports are selected."""
    from radgpt.cluster import ray_address

    d = cfg.draft
    if d.executor != "auto":
        return d.executor
    return "local" if ray_address(cfg) is None and selected <= d.local_max_reports else "ray"


def _map(ds, ray, cfg: Config, spec: ModelSpec, run: dict, actor: type):
    """selection -> Prompter pool -> `actor` pool: two Ray Data operators, which the streaming
    executor runs side by side (prompts of the next batches while the model generates)."""
    d = cfg.draft
    # one batch a block: each actor task drafts one batch, so drafts come back batch by batch
    # (a block of many batches is released whole when its task ends: no progress until then)
    ds = ds.repartition(target_num_rows_per_block=d.batch_size)
    args = {"cfg_json": cfg.to_json(), "spec": spec.to_json()}  # plain JSON, checked there
    # Ray Data hands each actor its UDF and context as object refs; Ray cannot promise to restart
    # an actor whose constructor arguments are refs (ray-project/ray#53727, an ERROR line from
    # core_worker). A failed pool is not restarted: the run drafts the reports still missing
    # with fresh pools (_draft_ray), draft.max_retries times.
    each = {"batch_size": d.batch_size, "batch_format": "pyarrow", "max_restarts": 0}
    ds = ds.map_batches(
        Prompter,
        fn_constructor_kwargs=args,
        compute=ray.data.ActorPoolStrategy(size=d.preprocess_actors),
        num_cpus=d.preprocess_cpus,
        **each,
    )
    return ds.map_batches(
        actor,
        fn_constructor_kwargs=args | {"run": run, "prompts": False},  # rows carry their prompts
        compute=ray.data.ActorPoolStrategy(size=d.num_actors),
        num_cpus=d.cpus_per_actor,
        num_gpus=d.gpus_per_actor,
        **each,
    )


def _draft_local(sel: pa.Table, cfg: Config, spec: ModelSpec, run: dict, actor, bar) -> list:
    """Prompter, then the Drafter, in this process, batch by batch (draft.executor=local): no Ray."""
    # as Ray starts an actor's process: OMP_NUM_THREADS = its CPUs before OpenMP starts (torch
    # then runs draft.threads_per_actor threads either way). Left unset, the same generate ran
    # 1.7-1.9x slower in process on the loaded 2-core VM (docs/benchmarks.md)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(cfg.draft.cpus_per_actor))))
    pre = Prompter(cfg.to_json(), spec.to_json())  # what the Ray actors hold, built once
    drafter = actor(cfg.to_json(), spec.to_json(), run, prompts=False)
    parts = []
    for s in range(0, len(sel), cfg.draft.batch_size):
        parts.append(drafter(pre(sel.slice(s, cfg.draft.batch_size))))
        bar.update(len(parts[-1]))
    return parts


def _died(e: Exception, ray) -> bool:
    """A drafting actor (or its node) died, as opposed to an error in the drafting code."""
    lost = (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError,
            ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)  # fmt: skip
    return isinstance(e, lost) or isinstance(getattr(e, "cause", None), lost)


def _draft_ray(sel: pa.Table, stage: Path, cfg: Config, spec: ModelSpec, run: dict, actor, bar):
    """Ray Data actor pools (draft.executor=ray, _map); when an actor dies, fresh pools draft the
    reports that did not come back, at most draft.max_retries times."""
    from radgpt.cluster import init_ray

    d = cfg.draft
    ray = init_ray(cfg)
    _check_cpus(cfg, ray)
    parts, got = [], set()
    for attempt in range(d.max_retries + 1):
        todo = sel.filter(
            pc.invert(pc.is_in(sel.column("draft_id"), pa.array(sorted(got), pa.string())))
        )
        if not len(todo):
            break
        path = stage / ("selection.parquet" if not attempt else f"selection-{attempt}.parquet")
        pq.write_table(todo, path, row_group_size=d.batch_size)
        with warnings.catch_warnings():  # max_restarts has no named parameter yet
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = _map(ray.data.read_parquet(str(path)), ray, cfg, spec, run, actor)
        batches = iter(ds.iter_batches(batch_format="pyarrow", batch_size=None))
        try:
            for b in batches:
                parts.append(b)
                new = set(b.column("draft_id").to_pylist()) - got
                got |= new
                bar.update(len(new))
        except Exception as e:
            if attempt == d.max_retries or not _died(e, ray):
                raise
            log.warning("run %s: a drafting actor died (%s); %d of %d reports left, a new pool drafts them",
                        run["run_id"], type(e).__name__, len(sel) - len(got), len(sel))  # fmt: skip
        finally:  # Ray Data's executor stops here, before Ray does (SIGTERM: ray.shutdown)
            batches.close()
    return parts


def sweep_stages(runs: Path) -> int:
    """Remove the folders <runs>/draft-*/ of runs that are no longer alive (killed outright: their
    selection holds Findings text); a live run holds its folder's lock. How many were removed."""
    from radgpt.table import TableBusy, locked

    n = 0
    for d in sorted(x for x in runs.glob("draft-*") if x.is_dir()):
        try:
            with locked(d, "sweep", 0, "sweep"):
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except (TableBusy, OSError):
            continue
    if n:
        log.warning("removed %d selection folders of drafting runs that were killed", n)
    return n


def run_draft(cfg: Config, *, actor=Drafter) -> dict:
    """Draft the reports of paths.table selected per draft.* with model.adapter (in process or on
    Ray Data, per draft.executor) and commit them to the drafts table paths.drafts; a summary.

    actor: the class each engine actor instantiates (after the Prompter pool), Drafter or a
    subclass taking the same arguments; the fault-injection seam of tests (a subclass that dies
    mid-run).
    """
    from radgpt.exits import exit_on_sigterm

    with exit_on_sigterm():
        return _run(cfg, actor)


def _run(cfg: Config, actor) -> dict:
    from radgpt.table import locked, read_reports
    from radgpt.writeback.drafts import commit_drafts, committed_ids

    t0, run_id = time.perf_counter(), new_run_id("draft")
    run_date = utcnow().strftime("%Y-%m-%d")
    drafts = cfg.path("drafts")
    adapter, version = adapter_source(cfg)  # a path, or a model registry version
    spec = ModelSpec.resolve(cfg, adapter, adapter_version=version)
    if adapter is None:
        log.warning(
            "run %s drafts with the base model alone (model.adapter is null), not an adapter",
            run_id,
        )
    reports = read_reports(cfg)
    done = committed_ids(drafts) if cfg.draft.selection == "new" else set()
    sel = select(reports, cfg, spec, done)
    summary = {
        "run_id": run_id,
        "run_date": run_date,
        "selection": cfg.draft.selection,
        "reports": len(reports),
        "selected": len(sel),
        "adapter": str(adapter) if adapter else None,  # None: the base model alone, by choice
        "adapter_version": version,  # models:/<model>/<n> when it came from the registry
        **spec.model_dump(include={"adapter_id", "prompt_name", "prompt_version", "generation"}),
        "drafts_dir": str(drafts),
    }
    log.info(
        "run %s: %d of %d reports selected (%s)",
        run_id,
        len(sel),
        len(reports),
        summary["selection"],
    )
    if not len(sel):
        return summary | {"drafted": 0, "committed": 0, "flags": {}, "seconds": 0.0}
    stage = cfg.path("runs") / run_id
    sweep_stages(stage.parent)
    how = executor(cfg, len(sel))
    summary["executor"] = how
    log.info("run %s drafts %s", run_id, "in process" if how == "local" else "on Ray Data")
    run = {"run_id": run_id, "run_date": run_date}
    with locked(stage, run_id, 0, "draft"):  # held while the selection exists
        try:
            t_draft = time.perf_counter()
            with Progress(len(sel), every_s=cfg.draft.progress_every_s) as bar:
                if how == "local":
                    parts = _draft_local(sel, cfg, spec, run, actor, bar)
                else:
                    parts = _draft_ray(sel, stage, cfg, spec, run, actor, bar)
            seconds = time.perf_counter() - t_draft
        finally:
            shutil.rmtree(stage, ignore_errors=True)  # the selection holds report text: not kept
    res = pa.concat_tables(parts).cast(arrow_schema("drafts"))
    got = set(res.column("draft_id").to_pylist())
    missing = set(sel.column("draft_id").to_pylist()) - got
    if missing:  # never commit a partial night
        raise RuntimeError(
            f"run {run_id}: {len(missing)} selected reports came back without a draft"
        )
    manifest = commit_drafts(res, drafts, run_id, cfg.draft.lock_wait_s)
    flags: dict[str, int] = {}
    for fl in res.column("flags").to_pylist() + res.column("flag_observations").to_pylist():
        for f in fl:  # flag counts, then "<flag>:<observation>" counts
            flags[f] = flags.get(f, 0) + 1
    out_tokens = int(pc.sum(res.column("output_tokens")).as_py())
    return summary | {
        "drafted": len(got),
        "retried_duplicates": len(res) - len(got),
        "committed": manifest["rows"],
        "duplicates": manifest["duplicates"],
        "flags": flags,
        "flagged": sum(1 for fl in res.column("flags").to_pylist() if fl),
        "output_tokens": out_tokens,
        "seconds": round(seconds, 3),
        "reports_per_s": round(len(got) / seconds, 3),
        "tokens_per_s": round(out_tokens / seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 3),
        "manifest": manifest["files"],
    }
