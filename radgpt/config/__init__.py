"""Typed configuration: YAML in conf/ -> validated pydantic models -> JSON with a version stamp.

Precedence (lowest to highest): class defaults < YAML file < env vars RADGPT__SECTION__KEY < CLI
`--set section.key=value` (and the dedicated CLI flags, applied by each command).
A bad value is a `ConfigError` whose message names the key, e.g. `train.lr: Input should be a valid number`.

The class defaults ARE the embedded default (conf/local.yaml states the same values; a test keeps
the two equal): no config file means the shipped adapter on the embedded SmolLM2, paths under var/.
Relative paths in a config (file, env or --set) resolve against the project home `HOME`: env
RADGPT_HOME, else the checkout holding this package (conf/, models/, schemas/), so a cron or
Kubernetes job started from / finds `models/iu-default`. Paths given as command-line arguments
(INPUT, --out, --data, ...) are made absolute against the working directory by radgpt.cli.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from radgpt.config.drafting import DraftCfg, ServeCfg
from radgpt.config.ingesting import CsvMapCfg as CsvMapCfg  # re-exported: radgpt.config is the API
from radgpt.config.ingesting import IngestCfg
from radgpt.config.sections import (  # the later wings' sections and the base of all
    ConfigError,
    FhirCfg,
    GateCfg,
    OutcomesCfg,
    RegistryCfg,
    _Cfg,
)
from radgpt.config.training import LoraCfg, TrainCfg

CONFIG_VERSION = 1
ENV_PREFIX = "RADGPT__"
HOME = Path(os.environ.get("RADGPT_HOME") or Path(__file__).resolve().parents[2])


def anchored(raw: str | os.PathLike) -> Path:
    """An absolute path: `raw` with ~ expanded, a relative one taken from HOME."""
    p = Path(raw).expanduser()
    return p if p.is_absolute() else HOME / p


class SparkCfg(_Cfg):
    master: str = Field(
        default="local[*]",
        description="Spark master URL of the ingest's session (local[*] = every local core); "
        "env SPARK_MASTER, a spark.master in conf and spark-submit's --master win "
        "(radgpt.cluster.spark_session)",
    )
    app_name: str = Field(
        default="radgpt-ingest",
        description="Spark application name (spark.app.name); spark-submit's --name wins",
    )
    conf: dict[str, str] = Field(
        default_factory=lambda: {"spark.driver.memory": "2g", "spark.sql.shuffle.partitions": "8"},
        description="extra spark.* settings passed to the session builder (spark-submit's own "
        'settings win); values become strings: 8, false give "8", "false"',
    )
    partitions: int | None = Field(
        default=None,
        ge=1,
        description="parse/write tasks of an ingest; null = from the input bytes and the cores "
        "(radgpt.ingest.plan, docs/ingest.md)",
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _spark_strings(cls, v):
        """Spark takes strings: YAML/--set scalars 8, false, 0.5 become "8", "false", "0.5"."""
        if not isinstance(v, dict):
            return v
        return {k: str(x).lower() if isinstance(x, bool) else str(x) if isinstance(x, int | float)
                else x for k, x in v.items()}  # fmt: skip


class RayCfg(_Cfg):
    address: str | None = Field(
        default=None,
        description="Ray cluster to join; null = RAY_ADDRESS env, else a local Ray started by the "
        "program (radgpt.cluster.init_ray)",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs of a local Ray (unused on a cluster); null = all cores",
    )
    namespace: str = Field(
        default="radgpt", description="Ray namespace of the program's jobs and actors"
    )
    dashboard: bool = Field(
        default=False,
        description="Ray's dashboard with a local Ray (on 127.0.0.1, like every port of a local "
        "Ray); off by default: nothing to look at in a nightly batch, and it probes cloud "
        "metadata endpoints",
    )


class PathsCfg(_Cfg):
    root: str = Field(
        default="./var",
        description="data root: `{root}` in the other paths and in ingest.inputs expands to it; "
        "relative paths here resolve against the project home (RADGPT_HOME, else the checkout)",
    )
    table: str = Field(
        default="{root}/table",
        description="canonical reports table (Parquet, source=/split= partitions; docs/ingest.md)",
    )
    drafts: str = Field(
        default="{root}/drafts",
        description="drafts table (Parquet, run_date= partitions + _manifests; docs/drafting.md)",
    )
    fhir: str = Field(
        default="{root}/fhir",
        description="FHIR R4 NDJSON write-back, a folder per drafting run (docs/writeback.md)",
    )
    runs: str = Field(
        default="{root}/runs",
        description="run summaries (nightly, evaluate, promote) and a drafting run's staged "
        "selection while it runs",
    )
    models: str = Field(
        default="{root}/models",
        description="imported base models (safetensors HF dirs; `{models}` in model.base), "
        "trained adapters (adapters/<run_id>) and registry downloads (registry/)",
    )
    checkpoints: str = Field(
        default="{root}/checkpoints",
        description="training checkpoints and metrics.jsonl, a folder per run (docs/training.md)",
    )
    sample: str = Field(
        default="{root}/sample",
        description="synthetic sample inputs (`radgpt sample`; `radgpt nightly` writes them when "
        "ingest.inputs names this folder and it is missing)",
    )
    quarantine: str = Field(
        default="{root}/quarantine",
        description="rejected inputs with their reasons (Parquet, schemas/quarantine.json); "
        "outside the table's hive tree so that `<table>/**/*.parquet` globs read reports only",
    )
    outcomes: str = Field(
        default="{root}/outcomes",
        description="what became of each draft once its final report arrived "
        "(schemas/outcomes.json)",
    )
    registry: str = Field(
        default="{root}/mlruns",
        description="the MLflow file store (tracking + model registry) unless registry.uri names "
        "a server",
    )

    def resolve(self, name: str) -> Path:
        """Absolute path of a configured location with `{root}` expanded (relative: from HOME)."""
        raw = getattr(self, name)
        return anchored(raw.format(root=self.root)).resolve()


class ModelCfg(_Cfg):
    base: str = Field(
        default="{models}/smollm2-135m-instruct",
        description="base model: a local HF dir (`{models}` = paths.models); never fetched from "
        "a hub",
    )
    adapter: str | None = Field(
        default="models/iu-default",
        description="PEFT adapter dir (the shipped one: models/iu-default/README.md); null = the "
        "base model alone, an explicit choice that the draft summary states; "
        '"registry:<alias or version>" = that version of the model registry '
        "(registry:champion; radgpt.model.registry)",
    )
    template: str = Field(
        default="chat-v1",
        description="prompt template name (radgpt/model/templates/<name>.json); alpaca-v1 for "
        "base models",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="weights' dtype for drafting: auto = bfloat16 on GPUs and on CPUs with native "
        "bf16 (AMX, AVX512-BF16), else float32; the resolved one is part of each draft's id",
    )


class EvalCfg(_Cfg):
    bootstrap: int = Field(
        default=1000,
        ge=10,
        description="bootstrap resamples of `radgpt evaluate`'s 95% CIs and paired comparisons",
    )
    seed: int = Field(
        default=7, description="seed of the bootstrap and of `radgpt review export`'s sample"
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["constant", "nn"],
        description="baselines scored beside the drafts (radgpt.evaluation.baselines: constant, "
        "nn, zero-shot); [] = none; `--baselines` overrides it",
    )
    carry_grid: list[float] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        description="draft.carry_threshold values the evaluation prices on the drafts "
        "(radgpt.evaluation.tune: flag rate vs silent misses per threshold); [] = no sweep",
    )
    max_flag_rate: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="the sweep recommends the carry threshold with the fewest silent dangerous "
        "misses among those flagging at most this share of drafts (reviewers' budget)",
    )


class Config(_Cfg):
    version: int = Field(
        default=CONFIG_VERSION,
        description="config format version; a config of another version is refused",
    )
    spark: SparkCfg = Field(default_factory=SparkCfg, description="Spark session of the ingest")
    ray: RayCfg = Field(default_factory=RayCfg, description="Ray cluster or local Ray")
    paths: PathsCfg = Field(default_factory=PathsCfg, description="where data and outputs live")
    ingest: IngestCfg = Field(
        default_factory=IngestCfg, description="`radgpt ingest`: inputs -> reports table"
    )
    model: ModelCfg = Field(
        default_factory=ModelCfg, description="base model, adapter and prompt template"
    )
    lora: LoraCfg = Field(default_factory=LoraCfg, description="LoRA shape (peft.LoraConfig)")
    train: TrainCfg = Field(default_factory=TrainCfg, description="`radgpt train` recipe")
    draft: DraftCfg = Field(default_factory=DraftCfg, description="batch drafting (radgpt draft)")
    serve: ServeCfg = Field(default_factory=ServeCfg, description="HTTP service (radgpt serve)")
    eval: EvalCfg = Field(default_factory=EvalCfg, description="`radgpt evaluate`")
    fhir: FhirCfg = Field(default_factory=FhirCfg, description="FHIR R4 write-back of drafts")
    registry: RegistryCfg = Field(
        default_factory=RegistryCfg, description="MLflow tracking and model registry"
    )
    outcomes: OutcomesCfg = Field(
        default_factory=OutcomesCfg, description="what became of drafts (radgpt outcomes)"
    )
    gate: GateCfg = Field(default_factory=GateCfg, description="promotion gate (radgpt promote)")

    @model_validator(mode="after")
    def _version(self) -> Config:
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version} != supported {CONFIG_VERSION}")
        return self

    def path(self, name: str) -> Path:
        return self.paths.resolve(name)

    def model_path(self, raw: str) -> Path:
        """Expand `{models}`/`{root}` in a model or adapter path (relative: from HOME)."""
        return anchored(raw.format(models=self.path("models"), root=self.paths.root))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Config:
        return _validate(json.loads(text), "<json>")

    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def _set_key(tree: dict, dotted: str, value: Any) -> None:
    # a Spark property is one key though it has dots: spark.conf.spark.sql.shuffle.partitions=64
    head, _, prop = dotted.partition("spark.conf.")
    keys = ["spark", "conf", prop] if not head and prop else dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: cannot set a key under a non-mapping value")
    node[keys[-1]] = value


def _validate(tree: dict, origin: str, env_keys: dict[str, str] | None = None) -> Config:
    """Config.model_validate with errors that name the key (and the env var that set it, if one)."""
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            var = next((v for k, v in (env_keys or {}).items() if key.startswith(k)), None)
            lines.append(
                f"{key}: {err['msg']}" + (f" (set by environment variable {var})" if var else "")
            )
        raise ConfigError(f"invalid config ({origin}):\n  " + "\n  ".join(lines)) from None


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str | tuple[str, Any]] | dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Load YAML (or defaults), apply env `RADGPT__SEC__KEY=v` and `key.sub=value` overrides."""
    tree: dict = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping")
        origin = str(p)
    env = os.environ if env is None else env
    env_keys: dict[str, str] = {}  # dotted key -> the variable that set it (for error messages)
    for k, v in sorted(env.items()):
        if k.startswith(ENV_PREFIX):
            key = k[len(ENV_PREFIX) :].lower().replace("__", ".")
            try:
                _set_key(tree, key, yaml.safe_load(v))
            except (ConfigError, yaml.YAMLError) as e:
                raise ConfigError(f"environment variable {k}: {e}") from None
            env_keys[key] = k
    items = overrides.items() if isinstance(overrides, dict) else _parse_sets(overrides or [])
    for k, v in items:
        _set_key(tree, k, v)
        env_keys.pop(k, None)  # a later override, not the environment, decides this key
    return _validate(tree, origin, env_keys)


def _parse_sets(sets: list) -> list[tuple[str, Any]]:
    out = []
    for s in sets:
        if isinstance(s, tuple):
            out.append(s)
            continue
        if "=" not in s:
            raise ConfigError(f"override {s!r} must look like section.key=value")
        k, v = s.split("=", 1)
        out.append((k.strip(), yaml.safe_load(v)))
    return out
