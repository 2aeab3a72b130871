"""`radgpt config` and docs/config.md: every key documented, the printed config is the one a
command runs with."""

import os
from pathlib import Path

from radgpt import cli
from radgpt.config import Config, load_config
from radgpt.config.keys import env_name, keys, markdown, show, values

REPO = Path(__file__).resolve().parent.parent


def test_every_key_has_help_and_a_type():
    ks = keys()
    assert len(ks) == len(values(Config())) > 100  # every leaf, sections flattened
    assert [k.name for k in ks if len(k.help.split()) < 3] == []
    by = {k.name: k for k in ks}
    assert by["draft.executor"].type == '"auto" | "ray" | "local"'
    assert by["draft.n_best"].type == "int >= 1, <= 16" and by["draft.n_best"].default == 4
    assert by["spark.conf"].type == "dict[str, str]"  # a mapping is one key
    assert by["train.max_steps"].type.startswith("int | null")
    assert env_name("draft.n_best") == "RADGPT__DRAFT__N_BEST"
    for k in ks:  # each key's variable is read as that key (a name matching no key is refused)
        if k.name != "version":
            cfg = load_config(None, env={env_name(k.name): show(k.default)})
            assert values(cfg)[k.name] == k.default, k.name


def test_docs_config_md_is_current():
    """docs/config.md is generated: `radgpt config docs > docs/config.md` after a config change."""
    doc = (REPO / "docs" / "config.md").read_text()
    assert doc == markdown(), "docs/config.md is stale: radgpt config docs > docs/config.md"
    for k in keys():
        assert f"| `{k.name}` |" in doc


def test_show_prints_the_config_a_command_runs_with(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RADGPT_CONFIG", raising=False)
    monkeypatch.setenv("RADGPT__TRAIN__EPOCHS", "7")
    sets = ["--set", "draft.n_best=2", "--set", "spark.conf.spark.sql.shuffle.partitions=16"]
    assert cli.main(["config", "show", *sets]) == 0
    printed = capsys.readouterr().out
    want = load_config(None, ["draft.n_best=2", "spark.conf.spark.sql.shuffle.partitions=16"])
    assert want.train.epochs == 7 and printed.startswith(f"# config hash {want.hash()}\n")
    f = tmp_path / "printed.yaml"
    f.write_text(printed)
    assert load_config(f, env={}) == want  # the printed YAML is a config file that runs the same


def test_keys_lists_values_beside_defaults_and_refuses_unknown_keys(capsys, monkeypatch):
    monkeypatch.delenv("RADGPT_CONFIG", raising=False)
    for k in [k for k in os.environ if k.startswith("RADGPT__")]:
        monkeypatch.delenv(k)
    assert cli.main(["config", "keys", "--changed", "--set", "draft.n_best=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "draft.n_best = 2   (default 4)" and "first-token" in " ".join(out[1:])
    assert out[-1].endswith("env RADGPT__DRAFT__N_BEST")
    assert not [line for line in out if not line.startswith(" ") and line != out[0]]
    assert cli.main(["config", "keys", "--changed", "--config", str(REPO / "conf/local.yaml")]) == 0
    assert capsys.readouterr().out.strip() == "(every key has its default)"
    assert cli.main(["config", "keys", "paths.table", "--set", "paths.root=/srv/rad"]) == 0
    assert capsys.readouterr().out.startswith('paths.table = "{root}/table"   -> /srv/rad/table')
    assert cli.main(["config", "keys", "draft.nbest"]) == 2  # a typo names itself, exit 2


def test_show_refuses_a_bad_value(capfd):
    assert cli.main(["config", "show", "--set", "draft.n_best=99"]) == 2
    assert "draft.n_best: Input should be less than or equal to 16" in capfd.readouterr().err
