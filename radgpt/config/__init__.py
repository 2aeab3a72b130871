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
from radgpt.config.sections import (  # the later wings' sections and the base of all
    ConfigError,
    FhirCfg,
    GateCfg,
    OutcomesCfg,
    RegistryCfg,
    _Cfg,
)

CONFIG_VERSION = 1
ENV_PREFIX = "RADGPT__"
HOME = Path(os.environ.get("RADGPT_HOME") or Path(__file__).resolve().parents[2])


def anchored(raw: str | os.PathLike) -> Path:
    """An absolute path: `raw` with ~ expanded, a relative one taken from HOME."""
    p = Path(raw).expanduser()
    return p if p.is_absolute() else HOME / p


class SparkCfg(_Cfg):
    master: str = "local[*]"
    app_name: str = "radgpt-ingest"
    # extra spark.* settings passed to the session builder (spark-submit's own settings win)
    conf: dict[str, str] = Field(
        default_factory=lambda: {"spark.driver.memory": "2g", "spark.sql.shuffle.partitions": "8"}
    )
    # parse/write tasks of an ingest; None = from the input bytes and the cores (radgpt.ingest.plan)
    partitions: int | None = Field(default=None, ge=1)

    @field_validator("conf", mode="before")
    @classmethod
    def _spark_strings(cls, v):
        """Spark takes strings: YAML/--set scalars 8, false, 0.5 become "8", "false", "0.5"."""
        if not isinstance(v, dict):
            return v
        return {k: str(x).lower() if isinstance(x, bool) else str(x) if isinstance(x, int | float)
                else x for k, x in v.items()}  # fmt: skip


class RayCfg(_Cfg):
    address: str | None = None  # None: RAY_ADDRESS env or a local Ray started by the program
    num_cpus: int | None = Field(default=None, ge=1)  # only for a local Ray
    namespace: str = "radgpt"
    # Ray's dashboard with a local Ray (on 127.0.0.1, like every port of a local Ray); off by
    # default: nothing to look at in a nightly batch, and it probes cloud metadata endpoints
    dashboard: bool = False


class PathsCfg(_Cfg):
    root: str = "./var"
    table: str = "{root}/table"  # canonical reports table (Parquet)
    drafts: str = "{root}/drafts"
    fhir: str = "{root}/fhir"
    runs: str = "{root}/runs"  # run summaries, manifests of nightly runs
    models: str = "{root}/models"  # imported base models (safetensors HF dirs)
    checkpoints: str = "{root}/checkpoints"
    sample: str = "{root}/sample"
    # rejected inputs with their reasons (Parquet, schemas/quarantine.json); outside the table's
    # hive tree so that `<table>/**/*.parquet` globs read reports only
    quarantine: str = "{root}/quarantine"
    # what became of each draft once its final report arrived (schemas/outcomes.json)
    outcomes: str = "{root}/outcomes"
    # the MLflow file store (tracking + model registry) unless registry.uri names a server
    registry: str = "{root}/mlruns"

    def resolve(self, name: str) -> Path:
        """Absolute path of a configured location with `{root}` expanded (relative: from HOME)."""
        raw = getattr(self, name)
        return anchored(raw.format(root=self.root)).resolve()


class CsvMapCfg(_Cfg):
    """Column mapping of a CSV export onto canonical fields (defaults fit IU indiana_reports.csv)."""

    id: str = "uid"
    findings: str = "findings"
    impression: str = "impression"
    indication: str | None = "indication"
    comparison: str | None = "comparison"
    exam: str | None = "image"
    patient_id: str | None = None
    study_id: str | None = None
    exam_time: str | None = None
    text: str | None = None  # a free-text report column to section-parse when findings is absent
    mesh: str | None = "MeSH"


class IngestCfg(_Cfg):
    # files/dirs; `{root}` expands to paths.root (`radgpt nightly` writes the sample when missing)
    inputs: list[str] = Field(default_factory=lambda: ["{root}/sample"])
    # names skipped when a directory of mixed inputs is expanded (fnmatch patterns)
    ignore: list[str] = Field(default_factory=lambda: [".*", "MANIFEST.json", "README*", "_*"])
    format: Literal["auto", "mimic", "openi", "csv", "fhir", "hl7"] = "auto"
    split_file: str | None = None
    seed: int = 20230601
    # the paper's OpenI proportions train:val:test
    split_ratio: tuple[int, int, int] = (2400, 292, 576)
    min_findings_words: int = Field(default=10, ge=0)
    min_impression_words: int = Field(default=2, ge=0)
    max_member_bytes: int = Field(default=5_000_000, ge=1)  # larger members are quarantined
    # CSV rows / NDJSON lines / zip, tgz members / HL7 batch messages per Spark work unit
    csv_rows_per_unit: int = Field(default=2000, ge=1)
    # seconds to wait for another ingest that holds the table's lock (<table>/_lock) before
    # failing with a message naming it (run id, pid, host, start); 0 = fail at once
    lock_wait_s: float = Field(default=0, ge=0)
    skip_unchanged: bool = Field(
        default=True,
        description="skip inputs that a committed run read with the same content (sha256; a "
        "folder: its listing) under the same reading settings, without parsing them (the input "
        "ledger in the table's manifests, radgpt.ingest.ledger); false (`radgpt ingest --full`) "
        "reads every input again, e.g. a backfill after a reader fix",
    )
    csv: CsvMapCfg = Field(default_factory=CsvMapCfg)


class ModelCfg(_Cfg):
    base: str = "{models}/smollm2-135m-instruct"  # local HF dir; never fetched from a hub
    # PEFT adapter dir (the shipped one: models/iu-default/README.md); null = the base model alone,
    # an explicit choice that the draft summary states; "registry:<alias or version>" = that
    # version of the model registry (registry:champion; radgpt.model.registry)
    adapter: str | None = "models/iu-default"
    template: str = "chat-v1"  # prompt template name (radgpt/templates/<name>.json)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="weights' dtype for drafting: auto = bfloat16 on GPUs and on CPUs with native "
        "bf16 (AMX, AVX512-BF16), else float32; the resolved one is part of each draft's id",
    )


class LoraCfg(_Cfg):
    """Maps one to one onto peft.LoraConfig."""

    r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    bias: Literal["none", "all", "lora_only"] = "none"


class TrainCfg(_Cfg):
    method: Literal["lora", "full"] = "lora"
    task: str = "impression"
    lr: float = Field(default=3e-4, gt=0)
    effective_batch: int = Field(default=128, ge=1)  # = micro_batch x grad_accum x num_workers
    micro_batch: int = Field(default=4, ge=1)
    epochs: float = Field(default=3, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    cutoff_len: int = Field(default=512, ge=16)  # tokens; longer prompts are truncated (counted)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    group_by_length: bool = True
    retrieval_k: int = Field(default=0, ge=0)  # k similar train reports in the prompt (0 = off)
    seed: int = 42
    checkpoint_every: int = Field(default=50, ge=1)  # optimizer steps
    # train on rows ingested since: an ISO date/time (at or after), an ingest run id (after that
    # run) or "champion" (after the registry champion's training began); null = every row.
    # Filters the train split only (validation stays whole); docs/loop.md
    since: str | None = None
    # start from this adapter's LoRA weights (a dir or "registry:<alias or version>") instead
    # of a fresh LoRA; its base and LoRA shape must match; null = from the base model
    init_adapter: str | None = None
    num_workers: int = Field(default=1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(default=1, ge=1)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="compute dtype of training: bfloat16 = bf16 autocast, with LoRA's frozen "
        "Linear weights stored in bf16 (what autocast multiplies with anyway: same losses, no "
        "cast per op; LoRA weights, embeddings, norms and the optimizer stay fp32); auto = "
        "bfloat16 on GPUs and on CPUs with native bf16 (AMX, AVX512-BF16), else float32",
    )
    compile: bool = Field(
        default=False,
        description="train under torch.compile(dynamic=True) (the forward and backward of each "
        "micro-batch; validation and checkpoints use the same weights eagerly): on a 2-core CPU "
        "1.23x tokens/s after ~5.5 minutes of compiling (docs/benchmarks.md), so for long runs",
    )

    @property
    def grad_accum(self) -> int:
        return self.effective_batch // (self.micro_batch * self.num_workers)

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainCfg:
        per_step = self.micro_batch * self.num_workers
        if self.effective_batch % per_step:
            raise ValueError(
                f"effective_batch={self.effective_batch} is not a multiple of "
                f"micro_batch x num_workers = {per_step}"
            )
        return self


class EvalCfg(_Cfg):
    bootstrap: int = Field(default=1000, ge=10)
    seed: int = 7
    baselines: list[str] = Field(default_factory=lambda: ["constant", "nn"])
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
    version: int = CONFIG_VERSION
    spark: SparkCfg = Field(default_factory=SparkCfg)
    ray: RayCfg = Field(default_factory=RayCfg)
    paths: PathsCfg = Field(default_factory=PathsCfg)
    ingest: IngestCfg = Field(default_factory=IngestCfg)
    model: ModelCfg = Field(default_factory=ModelCfg)
    lora: LoraCfg = Field(default_factory=LoraCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    draft: DraftCfg = Field(default_factory=DraftCfg)
    serve: ServeCfg = Field(default_factory=ServeCfg)
    eval: EvalCfg = Field(default_factory=EvalCfg)
    fhir: FhirCfg = Field(default_factory=FhirCfg)
    registry: RegistryCfg = Field(default_factory=RegistryCfg)
    outcomes: OutcomesCfg = Field(default_factory=OutcomesCfg)
    gate: GateCfg = Field(default_factory=GateCfg)

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
