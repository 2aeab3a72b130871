"""`radgpt train`: the eligible train split of the canonical table -> a PEFT adapter + record.

    radgpt train [--config FILE] [--data DIR] [--base-model DIR] [--out DIR] [--resume] [--max-steps N]
                 [--since DATE|INGEST_RUN_ID|champion] [--init-adapter DIR|registry:champion]

Driver side: reads the table through Ray Data, fits the retriever (train.retrieval_k > 0), starts a
Ray Train TorchTrainer (radgpt/train/loop.py) with checkpoints under
<paths.checkpoints>/<run_id>/, then copies the final checkpoint's adapter to --out (default
<paths.models>/adapters/<run_id>) and writes adapter_record.json next to it. With registry.track
the run goes to the model registry (radgpt.model.registry: params, metrics, record, adapter) and,
with registry.register_versions, becomes a new version aliased `challenger`.
Retraining (radgpt.train.sources): train.since narrows the train split to the reports whose
latest version was ingested since (the current view: a corrected report's latest version replaces
its earlier ones in every split, radgpt.table.read_reports), train.init_adapter starts from an
adapter's weights.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from radgpt.cluster import init_ray
from radgpt.runtime import new_run_id, utcnow, write_json_atomic
from radgpt.train import adapter, data
from radgpt.train.loop import STATE, train_loop

log = logging.getLogger(__name__)
RUN = "run.json"


def latest_run(ckpt_root: Path) -> Path | None:
    runs = sorted(p for p in ckpt_root.glob("train-*") if (p / RUN).is_file())
    return runs[-1] if runs else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step (our own train_state.json, not Ray's bookkeeping)."""
    best, best_step = None, -1
    for st in run_dir.glob(f"checkpoint_*/{STATE}"):
        s = json.loads(st.read_text())["step"]
        if s > best_step:
            best, best_step = st.parent, s
    return best


def _rows(ds, cols: list[str]) -> list[dict]:
    return ds.select_columns(cols).take_all() if ds.count() else []


def run_train(
    cfg,
    out: str | os.PathLike | None = None,
    resume: bool | str = False,
    loop: Callable[[dict], None] = train_loop,
) -> dict:
    """Train on the table paths.table from model.base (at most train.max_steps steps) and return
    the adapter record; the adapter goes to `out` (default <paths.models>/adapters/<run_id>).

    resume=True: the latest run; resume="<run_id>": that one. A resumed run takes its config, data,
    base and out from its run.json; only a train.max_steps set in `cfg` still applies.
    loop: the function each Ray Train worker runs with the train_loop_config (radgpt.train.loop's
    train_loop; tests pass a wrapper of it, e.g. one that crashes the run after a checkpoint).
    Ray pickles it to the workers with cloudpickle, so a wrapper must be importable there or
    pickled by value (a nested function is; see ray.cloudpickle.register_pickle_by_value).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from radgpt.config import Config
    from radgpt.model.base import base_sha256, ensure_default_model, require_dir
    from radgpt.model.retrieval import Retriever

    ckpt_root = cfg.path("checkpoints")
    run_dir, max_steps = None, cfg.train.max_steps
    if resume:
        run_dir = ckpt_root / resume if isinstance(resume, str) else latest_run(ckpt_root)
        if run_dir is None or not (run_dir / RUN).is_file():
            raise FileNotFoundError(f"--resume: no training run to resume under {ckpt_root}")
        saved = json.loads((run_dir / RUN).read_text())
        cfg = Config.from_json(json.dumps(saved["config"]))  # same config => same data order
        if max_steps is not None:
            cfg.train.max_steps = max_steps
        root, base, out = Path(saved["data"]), require_dir(saved["base"]), out or saved["out"]
        since, init = saved.get("since"), saved.get("init")
        since = since and (dt.datetime.fromisoformat(since[0]), since[1])
    else:
        from radgpt.train.sources import init_adapter, since_time

        root, base = cfg.path("table"), ensure_default_model(cfg)
        since = since_time(cfg, cfg.train.since)
        init = init_adapter(cfg, cfg.train.init_adapter, base_sha256(base))
    run_id = run_dir.name if run_dir else new_run_id("train")
    run_dir = ckpt_root / run_id
    out = Path(out) if out else cfg.path("models") / "adapters" / run_id
    t0 = time.time()

    init_ray(cfg)
    files = data.table_files(root)
    ds = {
        s: data.read_split(root, s, files, since if s == "train" else None).materialize()
        for s in ("train", "validate")
    }
    rows = {s: _rows(d, ["report_id", "pair_sha256"]) for s, d in ds.items()}
    if not rows["train"]:
        when = f" ingested since {since[0].isoformat()}" if since else ""
        raise ValueError(f"no eligible train rows{when} in {root}")
    snap = data.snapshot(root, files, rows)
    snap["since"] = since[0].isoformat() if since else None
    log.info("train run %s: %s rows, data sha %s", run_id, snap["rows"], snap["sha256"][:12])

    retr_dir = None
    if cfg.train.retrieval_k > 0:
        retr_dir = run_dir / "retrieval"
        if not (retr_dir / "corpus.json").is_file():
            r = _rows(ds["train"], ["report_id", "findings", "impression"])
            r = sorted(r, key=lambda x: x["report_id"])
            Retriever.fit(
                [x["report_id"] for x in r],
                [x["findings"] for x in r],
                [x["impression"] for x in r],
            ).save(retr_dir)
    if not (run_dir / RUN).is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            run_dir / RUN,
            {
                "run_id": run_id,
                "config": json.loads(cfg.to_json()),
                "data": str(root),
                "base": str(base),
                "out": str(out),
                "started_at": utcnow().isoformat(),
                "since": since and [since[0].isoformat(), since[1]],
                "init": init,
            },
        )
    start_ck = latest_checkpoint(run_dir)
    if start_ck:
        log.info("resuming %s from %s", run_id, start_ck.name)
    t = cfg.train
    res = {"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})}
    trainer = TorchTrainer(
        loop,
        train_loop_config={
            "cfg": cfg.to_json(),
            "base": str(base),
            "metrics": str(run_dir / "metrics.jsonl"),
            "retrieval": str(retr_dir) if retr_dir else None,
            "resume_from": str(start_ck) if start_ck else None,
            "init_adapter": init["dir"] if init else None,
        },
        scaling_config=ScalingConfig(
            num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=res
        ),
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        run_config=RunConfig(
            name=run_id,
            storage_path=str(ckpt_root),
            failure_config=FailureConfig(max_failures=0),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets=ds,
    )
    result = trainer.fit()
    final = latest_checkpoint(run_dir)
    if final is None:
        raise RuntimeError(f"training run {run_id} finished without a checkpoint ({result})")
    state = json.loads((final / STATE).read_text())

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for p in final.iterdir():
        if p.suffix in (".json", ".safetensors") and p.name != STATE:
            shutil.copy2(p, tmp / p.name)
    if t.method == "full":  # a full fine-tune is a whole model dir: ship the tokenizer too
        from radgpt.model.base import load_tokenizer

        load_tokenizer(base).save_pretrained(tmp)
    if retr_dir:
        shutil.copytree(retr_dir, tmp / "retrieval")
    # how often the training Findings' findings reach their Impressions: drafting's omits_finding
    from radgpt.model.carry import CarryRates

    pairs = _rows(ds["train"], ["findings", "impression"])
    CarryRates.fit([x["findings"] for x in pairs], [x["impression"] for x in pairs],
                   {"table": str(root), "split": "train", "data_sha256": snap["sha256"]}).save(tmp)  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    run = {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "checkpoint": str(final),
        "metrics": str(run_dir / "metrics.jsonl"),
        "started_at": json.loads((run_dir / RUN).read_text())["started_at"],
        "finished_at": utcnow().isoformat(),
        "wall_s": round(time.time() - t0, 1),
        "resumed": bool(start_ck),
        "init_adapter": init,
    }
    rec = adapter.build(cfg, out, base, base_sha256(base), snap, run, state)
    write_json_atomic(out / "adapter_record.json", rec)
    log.info(
        "adapter %s -> %s: %d steps, %d examples (%d truncated to cutoff_len, %d dropped)",
        rec["adapter_id"],
        out,
        state["step"],
        state["examples"],
        state["truncated"],
        state["dropped"],
    )
    result = {**rec, "adapter_dir": str(out)}
    if cfg.registry.track:
        from radgpt.model import registry

        try:
            result["registry"] = registry.log_training(cfg, rec, out)
        except Exception as e:
            raise RuntimeError(
                f"adapter {rec['adapter_id']} is in {out}, but logging it to the model registry "
                f"{registry.uri(cfg)} failed ({type(e).__name__}: {e}); log it again with "
                f"`radgpt registry register {out}`"
            ) from e
    return result
