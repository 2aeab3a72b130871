"""A drafting run's log and its executors: one progress indicator that moves, no library noise;
draft.executor local (in process) and ray commit the same drafts.

    .venv/bin/pytest tests/test_draft_logs.py -q              # the slow ones start Ray / the CLI
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_infer import FINDINGS, write_reports

from radgpt.config import load_config
from radgpt.draft.progress import Progress

REPO = Path(__file__).resolve().parent.parent
# what may vary between two runs of the same drafts: when, where, how long, which run
RUN_COLUMNS = {"run_id", "generated_at", "latency_ms", "worker_host", "code_version"}


def tiny_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter on the tiny Llama with one retrieved example: PEFT loading (its
    FutureWarning) and retrieval run in every drafting stage."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from radgpt.model.retrieval import Retriever

    m = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    m.save_pretrained(out)
    Retriever.fit(["x:1"], [FINDINGS[1]], ["Left effusion."]).save(out / "retrieval")
    rec = {"adapter_id": "lora-logs-1", "template": "chat-v1", "retrieval_k": 1}
    (out / "adapter_record.json").write_text(json.dumps(rec))
    return out


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_log_line_off_a_terminal_and_a_bar_on_one(caplog):
    with caplog.at_level(logging.INFO, logger="radgpt.draft.progress"):
        with Progress(10, every_s=0, stream=io.StringIO()) as p:
            for _ in range(5):
                p.update(2)
    lines = [r.getMessage() for r in caplog.records]
    assert [ln.split(" (")[0] for ln in lines] == [
        f"drafted {n}/10 reports" for n in (2, 4, 6, 8, 10)
    ]
    assert "eta" in lines[0] and lines[-1].endswith("s)") and " in " in lines[-1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="radgpt.draft.progress"):
        with Progress(10, every_s=3600, stream=io.StringIO()) as p:
            p.update(4)
            p.update(6)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["drafted 10/10 reports"]
    caplog.clear()
    tty = Tty()
    with caplog.at_level(logging.INFO, logger="radgpt.draft.progress"):
        with Progress(10, every_s=0, stream=tty) as p:
            p.update(10)
    assert not caplog.records and "10/10" in tty.getvalue()  # a tqdm bar, no log lines
    with caplog.at_level(logging.INFO, logger="radgpt.draft.progress"):
        with pytest.raises(RuntimeError), Progress(10, every_s=3600, stream=io.StringIO()) as p:
            p.update(4)
            raise RuntimeError("step failed")
    assert not caplog.records  # a failed step does not claim to be done


def test_executor_auto_is_local_for_a_small_selection_without_a_cluster(monkeypatch):
    from radgpt.draft.run import executor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = load_config(overrides={"draft.executor": "auto"}, env={})
    n = cfg.draft.local_max_reports
    assert (executor(cfg, n), executor(cfg, n + 1)) == ("local", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a cluster to join: Ray
    assert executor(cfg, 1) == "ray"
    cfg.draft.executor = "local"  # an explicit choice wins
    assert executor(cfg, 10**6) == "local"


@pytest.mark.slow
def test_local_and_ray_executors_commit_the_same_drafts(tmp_path, tiny_model_dir, ray_local):
    from radgpt.draft.run import run_draft
    from radgpt.writeback.drafts import read_drafts

    ad = tiny_adapter(tiny_model_dir, tmp_path / "adapter")
    over = {"paths.root": str(tmp_path), "model.base": str(tiny_model_dir), "model.adapter": str(ad),
            "draft.max_new_tokens": 6, "draft.batch_size": 3, "train.cutoff_len": 160,
            "draft.n_best": 2, "draft.carry_threshold": 0.0}  # fmt: skip
    write_reports(tmp_path / "table", 16)
    rows = {}
    for how in ("local", "ray"):
        cfg = load_config(
            overrides=over | {"draft.executor": how, "paths.drafts": str(tmp_path / how)}
        )
        s = run_draft(cfg)
        assert s["executor"] == how and s["committed"] == s["selected"] == 14
        t = read_drafts(cfg.path("drafts")).sort_by("draft_id").to_pylist()
        rows[how] = [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in t]
    assert rows["local"] == rows["ray"]
    assert {r["adapter_id"] for r in rows["ray"]} == {"lora-logs-1"}
    assert all(r["output_tokens"] > 0 for r in rows["ray"])  # something generated to compare
    # both drafted the prompts of the one preprocess stage (retrieval included), some n-best
    from radgpt.draft.drafter import Prompter
    from radgpt.draft.run import select
    from radgpt.model.spec import ModelSpec
    from radgpt.table import read_reports

    spec = ModelSpec.resolve(cfg, ad)
    pre = Prompter(cfg.to_json(), spec)(select(read_reports(cfg), cfg, spec))
    lens = [len(p) for p in pre["prompt_ids"].to_pylist()]
    want = dict(zip(pre["draft_id"].to_pylist(), lens, strict=True))
    assert {r["draft_id"]: r["prompt_tokens"] for r in rows["ray"]} == want
    # every report branches: each has a neighbour's Impression to compare with (the corpus's one)
    assert set(pre["branches"].to_pylist()) == {2}
    assert pre["neighbours"].to_pylist() == [["Left effusion."]] * len(pre)


ANSI = re.compile(r"\x1b\[")
PROGRESS = re.compile(r"INFO radgpt\.draft\.progress: drafted (\d+)/(\d+) reports")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ray", "local"])
def test_draft_cli_log_is_quiet_and_its_progress_moves(how, tmp_path, tiny_model_dir):
    """`radgpt draft` as cron runs it (stderr a pipe, not a terminal), in a fresh process: the
    driver's C++ logs, Ray's workers and Python warnings all reach the output."""
    ad = tiny_adapter(tiny_model_dir, tmp_path / "adapter")
    write_reports(tmp_path / "table", 16)
    sets = {"paths.root": tmp_path, "model.base": tiny_model_dir, "draft.max_new_tokens": 6,
            "draft.batch_size": 3, "train.cutoff_len": 160, "draft.executor": how,
            "draft.progress_every_s": 0}  # fmt: skip
    cmd = [sys.executable, "-m", "radgpt", "draft", "--adapter", str(ad)]
    cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    for k in ("RAY_ADDRESS", "RAY_COLOR_PREFIX"):  # a local Ray; colours as Ray chooses them
        env.pop(k, None)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    err = p.stderr
    assert p.returncode == 0, err[-3000:]
    assert json.loads(p.stdout)["executor"] == how
    assert not ANSI.search(err + p.stdout) and "\r" not in err  # no colours, no redrawn bars
    for noise in ("core_worker", "Warning", "Running Dataset", "Total Progress", "Loading weights",
                  "Traceback", "it/s]"):  # fmt: skip
        assert noise not in err, f"{noise!r} in the log:\n{err[-3000:]}"
    # libraries at WARNING and above; INFO and below are radgpt's own
    for line in err.splitlines():
        assert not re.search(r"\b(INFO|DEBUG)\b", line) or " radgpt." in line, line
    done = [(int(a), int(b)) for a, b in PROGRESS.findall(err)]
    assert [b for _, b in done] == [14] * len(done) and len(done) >= 3, err[-3000:]
    counts = [a for a, _ in done]
    assert counts == sorted(set(counts)) and counts[-1] == 14  # it moves, and ends at N
