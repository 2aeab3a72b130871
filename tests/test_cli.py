"""The command line is a thin shell at the edge: radgpt/cli parses, the domain modules never do.

Flags reach a run through the Config only (radgpt.cli.config), with the precedence
YAML < env RADGPT__* < --set < dedicated flags.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radgpt import cli

PKG = Path(cli.__file__).resolve().parent.parent  # radgpt/


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_the_cli_parses_arguments():
    """No module outside radgpt/cli (and `python -m radgpt`) imports argparse or radgpt.cli."""
    edge = {PKG / "__main__.py"}
    offenders = {}
    for path in sorted(PKG.rglob("*.py")):
        if path in edge or path.parent == PKG / "cli":
            continue
        bad = {
            n for n in _imports(path) if n == "argparse" or n == "radgpt.cli" or n.startswith("radgpt.cli.")
        }  # fmt: skip
        if bad:
            offenders[str(path.relative_to(PKG))] = sorted(bad)
    assert not offenders


def _leaves(parser, path=()):
    """(command path, parser) of every runnable subcommand."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, p in subs[0].choices.items():
        yield from _leaves(p, (*path, name))


def test_every_command_has_a_cmd_handler_in_the_cli():
    leaves = dict(_leaves(cli.build_parser()))
    assert {" ".join(k) for k in leaves} == {
        "sample", "ingest", "models import-smollm2", "models import-gguf", "models info",
        "models carry-rates", "models export-gguf", "train", "draft", "writeback", "nightly",
        "stats", "serve",
        "evaluate", "review export", "review import", "outcomes", "promote", "retrain",
        "registry list", "registry register", "registry alias",
        "config show", "config keys", "config docs",
    }  # fmt: skip
    for path, p in leaves.items():
        fn = p.get_default("func")
        assert fn.__name__ == "cmd_" + "_".join(path).replace("-", "_"), path
        assert fn.__module__.startswith("radgpt.cli."), path


def test_help_loads_no_heavy_module():
    code = (
        "import sys; from radgpt.cli import build_parser; build_parser(); "
        "print(sorted({'torch', 'ray', 'pyspark', 'polars', 'pandas', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_precedence_yaml_env_set_flag(tmp_path, monkeypatch):
    conf = tmp_path / "c.yaml"
    conf.write_text("paths:\n  table: /yaml\n  drafts: /yaml-drafts\n")
    p = cli.build_parser()

    def table(*argv, flag=None, env=None):
        if env:
            monkeypatch.setenv("RADGPT__PATHS__TABLE", env)
        args = p.parse_args(["draft", "--config", str(conf), *argv])
        return cli.config(args, {"paths.table": flag, "draft.limit": None}).paths

    assert table().table == "/yaml"
    assert table(env="/env").table == "/env"
    assert table("--set", "paths.table=/set").table == "/set"
    got = table("--set", "paths.table=/set", flag="/flag")
    assert (got.table, got.drafts) == ("/flag", "/yaml-drafts")  # None: not given


def _capture(monkeypatch, module, name, result):
    """Replace module.name by a fake that records its arguments and returns result."""
    import importlib

    calls = []

    def fake(*a, **kw):
        calls.append((a, kw))
        return result

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return calls


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.delenv("RADGPT_CONFIG", raising=False)
    return ["--set", f"paths.root={tmp_path}"]


def test_draft_flags_become_config_keys(root, tmp_path, monkeypatch):
    calls = _capture(monkeypatch, "radgpt.draft.run", "run_draft", {"run_id": "draft-x"})
    argv = ["--data", "/t", "--adapter", "/a", "--split", "validate,test", "--limit", "5"]
    assert cli.main(["draft", *root, *argv, "--out", "/d"]) == 0
    (cfg,), kw = calls[0]
    assert not kw and (cfg.paths.table, cfg.model.adapter, cfg.paths.drafts) == ("/t", "/a", "/d")
    assert (cfg.draft.selection, cfg.draft.split, cfg.draft.limit) == ("split", "validate,test", 5)
    assert (tmp_path / "runs" / "draft-x.json").is_file()
    cli.main(["draft", *root, "--set", "draft.selection=missing", "--limit", "0"])
    (cfg,), _ = calls[1]  # no flags: the config's own values (--limit 0 = not given, as always)
    assert (cfg.draft.selection, cfg.draft.limit) == ("missing", 96)
    assert cfg.model.adapter == "models/iu-default"  # no --config: the embedded default's adapter
    cli.main(["draft", *root, "--adapter", "NONE"])
    (cfg,), _ = calls[2]
    assert cfg.model.adapter is None  # the base model alone, asked for explicitly


def test_path_flags_are_relative_to_the_working_directory(root, tmp_path, monkeypatch):
    calls = _capture(monkeypatch, "radgpt.draft.run", "run_draft", {"run_id": "draft-x"})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["draft", *root, "--data", "t", "--adapter", "a", "--out", "d"]) == 0
    (cfg,), _ = calls[0]
    want = (str(tmp_path / "t"), str(tmp_path / "a"), str(tmp_path / "d"))
    assert (cfg.paths.table, cfg.model.adapter, cfg.paths.drafts) == want
    nightly = _capture(monkeypatch, "radgpt.nightly", "run_nightly", {"status": "ok"})
    monkeypatch.setattr("radgpt.nightly.brief", lambda s: "ok")
    assert cli.main(["nightly", "--out", "night"]) == 0
    (cfg,), _ = nightly[0]
    assert cfg.path("runs") == tmp_path / "night" / "runs"  # run summaries follow --out


def test_cli_behaves(capsys):
    p = cli.build_parser()
    assert p.parse_args(["--log-level", "debug", "stats"]).log_level == "DEBUG"
    for name in ("draft", "writeback", "nightly", "sample", "ingest"):
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        desc = sub.choices[name].description
        assert desc and len(desc.split()) > 8 and "issue" not in desc, name


def test_library_info_stays_quiet_radgpt_info_is_logged(capfd):
    """py4j logs a benign retry after a reset connection with `logging.info(..., exc_info=True)`
    on the root logger: at --log-level INFO that traceback must not reach the night's log."""
    import logging

    from radgpt.runtime import setup_logging

    try:
        setup_logging("INFO")
        logging.info("Exception while sending command.", exc_info=ValueError("reset"))  # as py4j
        logging.getLogger("py4j.clientserver").info("library info")
        logging.getLogger("radgpt.ingest.run").info("radgpt info")
        logging.getLogger("ray.data").warning("library warning")
        err = capfd.readouterr().err
        assert "radgpt info" in err and "library warning" in err
        assert "Traceback" not in err and "library info" not in err and "sending" not in err
        setup_logging("DEBUG")
        logging.getLogger("radgpt.table").debug("radgpt debug")
        logging.getLogger("urllib3").debug("library debug")
        err = capfd.readouterr().err
        assert "radgpt debug" in err and "library debug" not in err
    finally:
        setup_logging("INFO")  # the CLI's default


def test_a_missing_adapter_says_how_to_fix_it(root, tmp_path, capfd):
    rc = cli.main(["draft", *root, "--adapter", str(tmp_path / "nope")])
    assert rc == 2
    msg = capfd.readouterr().err  # the CLI's logging goes to stderr
    assert "adapter directory not found" in msg and "--adapter none" in msg
    assert "import-smollm2" not in msg  # not the base model's hint


def test_ingest_train_and_evaluate_flags_become_config_keys(root, monkeypatch):
    man = {"run_id": "ingest-x", "counts": dict.fromkeys(
        ("totals", "new_by_rule", "eligible_by_split", "quarantined", "by_source", "by_file"), {})}  # fmt: skip
    ingest = _capture(monkeypatch, "radgpt.ingest.run", "run_ingest", man)
    argv = ["ingest", *root, "--out", "/t", "--format", "csv", "--split-file", "/s.csv", "a", "b"]
    assert cli.main(argv) == 0
    (cfg,), kw = ingest[0]
    assert not kw and cfg.paths.table == "/t"
    assert cfg.ingest.inputs == [os.path.abspath("a"), os.path.abspath("b")]  # from the cwd
    assert (cfg.ingest.format, cfg.ingest.split_file) == ("csv", "/s.csv")

    rec = {"adapter_id": "a", "task": "t", "template": "x", "retrieval_k": 0, "metrics": {},
           "run": {"run_dir": "/r"}}  # fmt: skip
    train = _capture(monkeypatch, "radgpt.train.run", "run_train", rec)
    argv = ["train", *root, "--data", "/t", "--base-model", "/b", "--max-steps", "3", "--resume"]
    assert cli.main([*argv, "--out", "/o"]) == 0
    (cfg,), kw = train[0]
    assert (cfg.paths.table, cfg.model.base, cfg.train.max_steps) == ("/t", "/b", 3)
    assert kw == {"out": "/o", "resume": True}

    m = {"systems": {}, "n": 0}
    evaluate = _capture(monkeypatch, "radgpt.evaluation.run", "run_evaluate", m)
    argv = ["evaluate", *root, "--drafts", "/d", "--data", "/t", "--baselines", "nn, none"]
    assert cli.main([*argv, "--run-id", "r1", "--split", "all"]) == 0
    (cfg,), kw = evaluate[0]
    assert (cfg.paths.drafts, cfg.paths.table, cfg.eval.baselines) == ("/d", "/t", ["nn"])
    assert kw == {"split": "all", "out": None, "run_ids": ["r1"], "adapter_id": None}
    cli.main(["evaluate", *root])
    assert evaluate[1][0][0].eval.baselines == ["constant", "nn"]  # eval.baselines by default

    r = {"packet_id": "p", "packet_dir": "/p", "key_path": "/k"}
    export = _capture(monkeypatch, "radgpt.evaluation.review", "run_export", r)
    assert cli.main(["review", "export", *root, "--seed", "5", "--out", "/p", "-k", "3"]) == 0
    (cfg, *rest), kw = export[0]
    assert (cfg.eval.seed, cfg.eval.baselines, rest) == (5, [], ["test", 3, "/p", None, None])


def test_spark_submit_job_takes_the_cli_config_option():
    job = Path(__file__).resolve().parent.parent / "jobs" / "ingest_reports.py"
    out = subprocess.run(
        [sys.executable, str(job), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--config CONFIG" in out and "dist/radgpt.zip" not in out
    assert "jobs/ingest_reports.py \\\n        --config conf/cluster.yaml" in out  # shown as typed
    spec = importlib.util.spec_from_file_location("ingest_job", job)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import argparse as ap

    for name in ("--config", "--conf-file"):  # the old name still parses
        p = ap.ArgumentParser()
        cli.add_config_args(p, "--config", "--conf-file")
        assert p.parse_args([name, "c.yaml"]).config == "c.yaml"
