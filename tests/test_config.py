"""Typed config: YAML files load, overrides apply in order, bad values name their key."""

from pathlib import Path

import pytest

from radgpt.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def test_local_yaml_loads_with_paper_recipe():
    cfg = load_config(REPO / "conf" / "local.yaml", env={})
    assert cfg.spark.master == "local[*]"
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (8, 16, 0.05)
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.train.lr == 3e-4 and cfg.train.effective_batch == 128
    assert cfg.train.grad_accum * cfg.train.micro_batch * cfg.train.num_workers == 128
    assert (
        cfg.path("table") == (REPO / "var" / "table").resolve() or cfg.path("table").name == "table"
    )


def test_json_round_trip_keeps_version_and_values():
    cfg = load_config(None, ["train.lr=1e-4", "draft.num_actors=2"], env={})
    back = Config.from_json(cfg.to_json())
    assert back == cfg and back.version == 1 and back.train.lr == 1e-4
    assert back.hash() == cfg.hash()
    assert load_config(None, env={}).hash() != cfg.hash()


def test_precedence_yaml_env_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("version: 1\ntrain:\n  lr: 0.1\n  epochs: 2\n")
    env = {"RADGPT__TRAIN__EPOCHS": "5", "RADGPT__TRAIN__LR": "0.2", "OTHER": "x"}
    cfg = load_config(f, ["train.lr=0.3"], env=env)
    assert cfg.train.epochs == 5  # env beats yaml
    assert cfg.train.lr == 0.3  # --set beats env
    # a Spark property keeps its dots (and its case): one key under spark.conf
    cfg = load_config(None, ["spark.conf.spark.driver.extraJavaOptions=-Xss4m"], env={})
    assert cfg.spark.conf["spark.driver.extraJavaOptions"] == "-Xss4m"
    cfg = load_config(None, ["spark.conf.spark.sql.shuffle.partitions=64"], env={})
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "64"  # Spark takes strings
    assert load_config(None, ["spark.conf.x.y=false"], env={}).spark.conf["x.y"] == "false"


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.lr=abc", "train.lr"),
        ("train.effective_batch=130", "train"),  # not a multiple of micro_batch x workers
        ("draft.selection=sometimes", "draft.selection"),
        ("ingest.nonsense=1", "ingest.nonsense"),
        ("lora.r=0", "lora.r"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override], env={})
    assert key in str(e.value)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    wrong_version = tmp_path / "v.yaml"
    wrong_version.write_text("version: 9\n")
    with pytest.raises(ConfigError, match="version"):
        load_config(wrong_version, env={})


def test_built_in_defaults_are_the_embedded_default():
    """One source of truth: no --config means exactly conf/local.yaml (the shipped adapter)."""
    assert load_config(None, env={}) == load_config(REPO / "conf" / "local.yaml", env={})
    assert load_config(None, env={}).model.adapter == "models/iu-default"


def test_relative_paths_resolve_against_the_project_home_not_the_cwd(tmp_path, monkeypatch):
    from radgpt.config import HOME

    monkeypatch.chdir(tmp_path)  # as a cron job started elsewhere
    cfg = load_config(None, env={})
    assert cfg.model_path(cfg.model.adapter) == HOME / "models" / "iu-default"
    assert cfg.path("table") == (HOME / "var" / "table").resolve()
    assert cfg.path("quarantine") == (HOME / "var" / "quarantine").resolve()
    assert (HOME / "models" / "iu-default" / "adapter_config.json").is_file()
    abs_root = tmp_path / "elsewhere"
    assert (
        load_config(None, [f"paths.root={abs_root}"], env={}).path("drafts") == abs_root / "drafts"
    )


def test_env_override_errors_name_the_variable():
    with pytest.raises(ConfigError, match=r"train\.lr: .*environment variable RADGPT__TRAIN__LR"):
        load_config(None, env={"RADGPT__TRAIN__LR": "fast"})
    with pytest.raises(ConfigError) as e:  # a --set of the same key decides: no env blame
        load_config(None, ["train.lr=fast"], env={"RADGPT__TRAIN__LR": "0.1"})
    assert "environment" not in str(e.value)


def test_training_variants_are_valid_configs():
    """Every recipe of training/variants.tsv (training/sweep.sh) loads on conf/gpu.yaml: a
    misspelt key or template fails here, not 10 minutes into a GPU session."""
    from radgpt.model import prompts

    rows = [ln.split("\t") for ln in (REPO / "training/variants.tsv").read_text().splitlines()]
    rows = [r for r in rows if r[0] and not r[0].startswith("#")]
    assert len(rows) >= 2 and len({r[0] for r in rows}) == len(rows)
    for name, sets in rows:
        words = sets.split()
        assert words[::2] == ["--set"] * (len(words) // 2), name
        cfg = load_config(REPO / "conf/gpu.yaml", words[1::2], env={})
        prompts.get(cfg.model.template)
