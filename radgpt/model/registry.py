"""The model registry: MLflow runs of every training, registered adapter versions and aliases.

    from radgpt.model import registry
    registry.log_training(cfg, record, adapter_dir)  # a run (+ a version aliased challenger)
    registry.lookup(cfg, "champion")                 # Resolved(dir, version, uri, adapter_id) or None
    registry.resolve(cfg, "registry:3")              # the same for a version number; missing: an error
    registry.set_alias(cfg, "champion", "3")

The store is registry.uri (an MLflow tracking server the hospital runs) or, by default, MLflow's
file store at paths.registry ({root}/mlruns: plain files on the shared volume). Nothing here
reaches a network of its own accord: MLflow's telemetry is switched off (MLFLOW_DISABLE_TELEMETRY,
DO_NOT_TRACK) before mlflow is imported, and MLflow is imported only here, when a registry is used.
MLflow 3 keeps its file store in maintenance mode behind MLFLOW_ALLOW_FILE_STORE, which this module
sets; a site that outgrows it points registry.uri at a server (docs/loop.md).

A registered version's source is the adapter directory logged as the artifact `adapter` of its
run: with the file store a local directory that drafting loads in place; from a server it is
downloaded once to <paths.models>/registry/<model>-v<version>. Aliases: `challenger` (the latest
trained candidate) and `champion` (what drafting uses with registry.champion_drafts or
model.adapter: registry:champion), moved only by `radgpt promote` (radgpt.loop.promote) or by hand.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from radgpt.config import Config

log = logging.getLogger(__name__)
REF = "registry:"  # model.adapter / train.init_adapter value naming a registry alias or version
ARTIFACT = "adapter"  # the adapter dir inside its run's artifacts
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's limits per log_batch call


def is_ref(raw: object) -> bool:
    return isinstance(raw, str) and raw.startswith(REF)


@dataclass(frozen=True)
class Resolved:
    """A registered adapter version: where its files are and what names it."""

    dir: Path
    version: str
    uri: str  # models:/<model>/<version>, the drafts' adapter_version
    adapter_id: str | None
    alias: str | None = None


def uri(cfg: Config) -> str:
    return cfg.registry.uri or cfg.path("registry").as_uri()


def _quiet() -> None:
    """Before mlflow is first imported (this module imports it only inside functions): no
    telemetry, and MLflow 3's file store allowed."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"


_quiet()


def client(cfg: Config):
    """An MlflowClient on registry.uri (default: the file store at paths.registry)."""
    _quiet()
    from mlflow import MlflowClient

    u = uri(cfg)
    if u.startswith("file:"):
        cfg.path("registry").mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=u, registry_uri=u)


def _missing(e: Exception) -> bool:
    return getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def experiment_id(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    return exp.experiment_id if exp else c.create_experiment(name)


def flat(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 3e-4}} -> {"train.lr": "0.0003"}; lists and None as JSON."""
    out: dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flat(v, key + ".")
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v)
    return out


def log_run(
    cfg: Config,
    name: str,
    params: dict[str, str],
    metrics: list[tuple[str, float, int]],
    tags: dict[str, str],
    artifacts: dict[str, Path | None],
) -> str:
    """A finished MLflow run in registry.experiment: params, metrics (key, value, step), tags and
    artifacts {artifact path: file or dir} ("" = the root); returns its run id."""
    import time

    from mlflow.entities import Metric, Param

    c = client(cfg)
    run = c.create_run(experiment_id(c, cfg.registry.experiment), run_name=name, tags=tags)
    rid = run.info.run_id
    ps = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, int(s)) for k, v, s in metrics if v is not None]
    for i in range(0, len(ps), MAX_PARAMS):
        c.log_batch(rid, params=ps[i : i + MAX_PARAMS])
    for i in range(0, len(ms), MAX_METRICS):
        c.log_batch(rid, metrics=ms[i : i + MAX_METRICS])
    for dest, p in artifacts.items():
        if p is None or not Path(p).exists():
            continue
        if Path(p).is_dir():
            c.log_artifacts(rid, str(p), dest or None)
        else:
            c.log_artifact(rid, str(p), dest or None)
    c.set_terminated(rid)
    return rid


def training_metrics(rec: dict) -> list[tuple[str, float, int]]:
    """Per step: loss, lr, tokens/s, examples/s, val_loss (radgpt.train.loop's metrics.jsonl),
    then the record's summary (first/final loss, mean tokens/s) at the last step."""
    path = Path((rec.get("run") or {}).get("metrics") or "")
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    keys = ("loss", "lr", "tokens_per_s", "examples_per_s", "val_loss")
    out = [(k, r[k], r["step"]) for r in rows for k in keys if r.get(k) is not None]
    m, last = rec.get("metrics") or {}, rows[-1]["step"] if rows else 0
    for k in ("first_loss", "final_loss", "mean_tokens_per_s", "peak_rss_mb"):
        if m.get(k) is not None:
            out.append((k, m[k], last))
    return out


def log_training(
    cfg: Config,
    rec: dict,
    adapter_dir: str | os.PathLike,
    evaluation: str | os.PathLike | None = None,
    alias: str | None = "challenger",
) -> dict:
    """Log one trained adapter: params (the record config's train and lora sections, base, data),
    metrics, the record and the adapter (+ an evaluation report dir) as artifacts; with
    registry.register_versions a new version of registry.model, given `alias`. Returns where it went."""
    d = Path(adapter_dir)
    conf = rec.get("config") or {}
    ds = rec.get("dataset") or {}
    params = flat({k: conf[k] for k in ("train", "lora") if k in conf})
    params |= {
        "model.base": str(rec.get("base_model")),
        "model.template": str(rec.get("template")),
        "base_sha256": str(rec.get("base_sha256")),
        "data.sha256": str(ds.get("sha256")),
        "data.rows": json.dumps(ds.get("rows")),
        "data.since": json.dumps(ds.get("since")),
        "init_adapter": json.dumps((rec.get("run") or {}).get("init_adapter")),
    }
    tags = {
        "radgpt.kind": "train",
        "adapter_id": str(rec.get("adapter_id")),
        "code_version": str(rec.get("code_version")),
        "train_run_id": str((rec.get("run") or {}).get("run_id")),
    }
    arts = {"": d / "adapter_record.json", ARTIFACT: d, "evaluation": evaluation}
    name = (rec.get("run") or {}).get("run_id") or f"register-{rec.get('adapter_id')}"
    rid = log_run(cfg, name, params, training_metrics(rec), tags, arts)  # type: ignore[arg-type]
    out: dict[str, Any] = {"uri": uri(cfg), "run_id": rid, "model": cfg.registry.model}
    if cfg.registry.register_versions:
        out["version"] = register(cfg, rid, rec)
        if alias:
            set_alias(cfg, alias, out["version"])
            out["alias"] = alias
    log.info("registry: adapter %s logged as run %s (%s)", rec.get("adapter_id"), rid, out)
    return out


def register(cfg: Config, run_id: str, rec: dict) -> str:
    """A new version of registry.model from run_id's `adapter` artifact; its number."""
    c = client(cfg)
    name = cfg.registry.model
    try:
        c.get_registered_model(name)
    except Exception as e:  # noqa: BLE001 - MlflowException; anything else is re-raised
        if not _missing(e):
            raise
        c.create_registered_model(name, description="RadGPT impression adapters (LoRA)")
    src = f"{c.get_run(run_id).info.artifact_uri}/{ARTIFACT}"
    tags = {k: str(rec.get(k)) for k in ("adapter_id", "base_sha256", "template")}
    tags["data_sha256"] = str((rec.get("dataset") or {}).get("sha256"))
    mv = c.create_model_version(name, src, run_id=run_id, tags=tags)
    return str(mv.version)


def set_alias(cfg: Config, alias: str, version: str | int) -> None:
    client(cfg).set_registered_model_alias(cfg.registry.model, alias, str(version))


def tag_version(cfg: Config, version: str | int, tags: dict[str, str]) -> None:
    c = client(cfg)
    for k, v in tags.items():
        c.set_model_version_tag(cfg.registry.model, str(version), k, str(v))


def versions(cfg: Config) -> list[dict]:
    """Every version of registry.model: number, aliases, adapter id, tags, run, created."""
    c = client(cfg)
    try:
        rm = c.get_registered_model(cfg.registry.model)
    except Exception as e:  # noqa: BLE001
        if _missing(e):
            return []
        raise
    by_version: dict[str, list[str]] = {}
    for a, v in (rm.aliases or {}).items():
        by_version.setdefault(str(v), []).append(a)
    out = [
        {
            "version": str(mv.version),
            "aliases": sorted(by_version.get(str(mv.version), [])),
            "adapter_id": mv.tags.get("adapter_id"),
            "tags": dict(mv.tags),
            "run_id": mv.run_id,
            "created": mv.creation_timestamp,
        }
        for mv in c.search_model_versions(f"name='{cfg.registry.model}'")
    ]
    return sorted(out, key=lambda x: int(x["version"]))


def lookup(cfg: Config, ref: str) -> Resolved | None:
    """The version an alias (or a version number) names, its files local; None when the registry
    has no such alias/version (or no model yet)."""
    from radgpt.model.spec import AdapterRecord

    ref = ref.removeprefix(REF)
    c = client(cfg)
    name = cfg.registry.model
    try:
        mv = (
            c.get_model_version(name, ref)
            if ref.isdigit()
            else c.get_model_version_by_alias(name, ref)
        )
    except Exception as e:  # noqa: BLE001
        if _missing(e) or "alias" in str(e) and "not found" in str(e):
            return None
        raise
    d = _local(cfg, mv)
    rec = AdapterRecord.load(d)
    want = mv.tags.get("adapter_id")
    if want and rec.adapter_id != want:
        raise ValueError(
            f"registry {name} version {mv.version}: adapter in {d} is {rec.adapter_id}, "
            f"the version was registered as {want}"
        )
    return Resolved(
        dir=d,
        version=str(mv.version),
        uri=f"models:/{name}/{mv.version}",
        adapter_id=rec.adapter_id,
        alias=None if ref.isdigit() else ref,
    )


def resolve(cfg: Config, ref: str) -> Resolved:
    """lookup, or an error that says what to do."""
    got = lookup(cfg, ref)
    if got is None:
        raise FileNotFoundError(
            f"model registry {uri(cfg)} has no {cfg.registry.model} {ref.removeprefix(REF)!r}: "
            "train one (`radgpt train` registers a challenger), register one "
            "(`radgpt registry register DIR --alias champion`) or promote one (`radgpt promote`)"
        )
    return got


def _local(cfg: Config, mv) -> Path:
    """The version's adapter dir on this machine (a file-store source as is, else downloaded)."""
    src = str(mv.source)
    if src.startswith("file:"):
        p = Path(unquote(urlparse(src).path))
        if p.is_dir():
            return p
    elif src.startswith("/") and Path(src).is_dir():
        return Path(src)
    dst = cfg.path("models") / "registry" / f"{cfg.registry.model}-v{mv.version}"
    got = dst / (Path(urlparse(src).path).name or ARTIFACT)
    if not (got / "adapter_record.json").is_file():
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=src, dst_path=str(dst), tracking_uri=uri(cfg)
            )
        )
    return got
