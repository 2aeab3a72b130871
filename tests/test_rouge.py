"""ROUGE with the real rouge-score scorer, bootstrap CIs and the paired bootstrap.

.venv/bin/pytest tests/test_rouge.py -q
"""

import numpy as np
import pytest

from radgpt.evaluation.rouge import bootstrap_ci, paired_bootstrap, rouge, summarize


def test_rouge_identical_disjoint_and_stemming():
    refs = [
        "No acute cardiopulmonary abnormality.",
        "Small left pleural effusion.",
        "Cardiomegaly.",
    ]
    hyps = ["No acute cardiopulmonary abnormality.", "Fractured rib.", "cardiomegaly"]
    s = rouge(refs, hyps)
    assert s["rouge1"].tolist() == [1.0, 0.0, 1.0]
    assert s["rouge2"][0] == 1.0 and s["rouge2"][1] == 0.0
    # stemming: "effusions" vs "effusion" count as the same token
    st = rouge(["small effusions"], ["small effusion"])
    assert st["rouge1"][0] == pytest.approx(1.0)
    # an empty draft scores 0, it does not crash
    assert rouge(["no pneumothorax"], [""])["rougeL"][0] == 0.0


def test_rouge_partial_overlap_value():
    # 2 shared unigrams of 3 (ref) and 4 (hyp): P=2/4, R=2/3 -> F1 = 4/7
    s = rouge(["mild cardiomegaly present"], ["mild cardiomegaly is seen"])
    assert s["rouge1"][0] == pytest.approx(4 / 7)


def test_rouge_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="references"):
        rouge(["a"], ["a", "b"])


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    x = np.random.default_rng(0).uniform(size=200)
    a = bootstrap_ci(x, n_boot=500, seed=1)
    assert a["lo"] < a["mean"] < a["hi"] and a["n"] == 200
    assert a == bootstrap_ci(x, n_boot=500, seed=1)
    # width shrinks roughly like 1/sqrt(n)
    wide = bootstrap_ci(x[:20], n_boot=500, seed=1)
    assert (wide["hi"] - wide["lo"]) > 2 * (a["hi"] - a["lo"])
    # a constant has a zero-width interval
    c = bootstrap_ci([0.5] * 10, n_boot=50)
    assert c["lo"] == c["hi"] == 0.5
    assert bootstrap_ci([], n_boot=50)["mean"] is None
    assert set(summarize({"rouge1": x}, 50)["rouge1"]) == {"mean", "lo", "hi", "n"}


def test_paired_bootstrap_detects_a_better_system():
    rng = np.random.default_rng(3)
    b = rng.uniform(0.2, 0.6, size=100)
    a = b + 0.05 + rng.normal(0, 0.02, size=100)  # A beats B on almost every report
    p = paired_bootstrap(a, b, n_boot=1000, seed=2)
    assert p["diff"] == pytest.approx(float((a - b).mean()))
    assert 0 < p["lo"] < p["diff"] < p["hi"]
    assert p["p_a_not_better"] < 0.01
    q = paired_bootstrap(b, a, n_boot=1000, seed=2)
    assert q["p_a_not_better"] > 0.99 and q["hi"] < 0
    with pytest.raises(ValueError, match="same reports"):
        paired_bootstrap(a, b[:-1])
