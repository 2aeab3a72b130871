"""training/rerank_rules.py scores pick rules as drafting picks and `radgpt evaluate` scores.

.venv/bin/pytest tests/test_rerank_rules.py -q
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "training" / "rerank_rules.py"


@pytest.fixture(scope="module")
def rules():
    spec = importlib.util.spec_from_file_location("rerank_rules", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows() -> list[dict]:
    """Two reports with dumped branches: [text, sum log-prob, tokens incl. EOS, stopped]."""
    normal = {
        "report_id": "csv:1", "findings": "Heart size normal. Lungs clear.",
        "reference": "No active disease.", "usual_finding": False,
        "candidates": [["No acute cardiopulmonary abnormality.", -1.0, 8, True],
                       ["No active disease.", -2.0, 5, True]],
        "neighbours": ["No active disease."] * 3 + ["Normal chest."],
    }  # fmt: skip
    effusion = {
        "report_id": "csv:2", "findings": "Small left pleural effusion. Heart size normal.",
        "reference": "Small left pleural effusion.", "usual_finding": True,
        "candidates": [["No active disease.", -1.0, 5, True],
                       ["Small left pleural effusion.", -3.0, 7, True]],
        "neighbours": ["No active disease."] * 4,
    }  # fmt: skip
    return [normal, effusion]


def test_rules_pick_as_drafting_and_score_as_evaluate(rules):
    got = {x["rule"]: x for x in rules.score(rows(), {"Pleural Effusion"})}
    before = got["shipped before (Findings term 1, branch on a usual finding)"]
    now = got["every report + 10 neighbours x 1, Findings 2 (default)"]
    words = got["every report + 10 neighbours x 1, Findings 1"]
    # before: greedy for the normal report (it does not branch), the effusion carried
    assert before["carry"] == {"both": 1, "carried": 1, "rate": 1.0}
    # ROUGE-1 of the greedy draft: "no" of 4 and 3 stemmed words, F1 2/7
    assert before["rouge1"] == pytest.approx((2 / 7 + 1.0) / 2)
    # now: the neighbours' wording for the normal report; the finding still outweighs wording
    assert now["rouge1"] == pytest.approx(1.0) and now["carry"]["carried"] == 1
    assert now["paired"]["diff"] == pytest.approx(1.0 - (2 / 7 + 1.0) / 2)
    # at Findings weight 1 the wording of 4 "No active disease." neighbours drops the effusion
    assert words["carry"]["carried"] == 0 and words["dangerous_misses"] == 1
