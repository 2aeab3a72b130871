"""Baselines: majority constant, TF-IDF nearest neighbour, zero-shot base model (tiny real Llama).

.venv/bin/pytest tests/test_baselines.py -q
"""

import pytest

from radgpt.config import load_config
from radgpt.evaluation.baselines import NearestNeighbour, constant, run_baselines

TRAIN_F = [
    "Heart size normal. Lungs clear. No effusion or pneumothorax.",
    "Large right apical pneumothorax with mediastinal shift.",
    "Moderate left pleural effusion with basilar atelectasis.",
    "Heart size normal, lungs are clear, no focal consolidation.",
]
TRAIN_I = [
    "No acute disease.",
    "Large right pneumothorax.",
    "Left pleural effusion.",
    "no  acute DISEASE.",  # same as the first after normalization
]


def test_constant_is_the_normalized_majority():
    assert constant(TRAIN_I) == "No acute disease."
    assert constant(["b", "a", "a ", "b", "A"]) == "a"  # "a" x3 beats "b" x2
    with pytest.raises(ValueError, match="no Impressions"):
        constant(["", "  "])


def test_nearest_neighbour_copies_the_closest_train_impression():
    nn = NearestNeighbour().fit(TRAIN_F, TRAIN_I)
    q = ["Small left pleural effusion and atelectasis.", "Right pneumothorax, large, apical."]
    assert nn.predict(q) == ["Left pleural effusion.", "Large right pneumothorax."]
    assert nn.neighbours(TRAIN_F).tolist() == [0, 1, 2, 3]  # a train report is its own neighbour
    assert nn.predict([]) == []
    with pytest.raises(ValueError):
        NearestNeighbour().fit(TRAIN_F, TRAIN_I[:2])


def test_run_baselines_names_and_errors():
    out = run_baselines(["constant", "nn"], TRAIN_F, TRAIN_I, ["Large pneumothorax on the right."])
    assert out == {"constant": ["No acute disease."], "nn": ["Large right pneumothorax."]}
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baselines(["gpt4"], TRAIN_F, TRAIN_I, ["x"])
    with pytest.raises(ValueError, match="needs a config"):
        run_baselines(["zero-shot"], TRAIN_F, TRAIN_I, ["x"])


def test_zero_shot_runs_the_base_model_without_adapter(tiny_model_dir):
    pytest.importorskip("radgpt.draft.drafter")
    cfg = load_config(
        overrides={"model.base": str(tiny_model_dir), "model.adapter": "/nonexistent/adapter",
                   "draft.max_new_tokens": 6}
    )  # fmt: skip
    q = [
        "The heart size is normal. The lungs are clear.",
        "Mild cardiomegaly. Small left effusion.",
    ]
    out = run_baselines(["zero-shot"], TRAIN_F, TRAIN_I, q, cfg)["zero-shot"]
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    # greedy decoding: the same inputs give the same drafts
    assert run_baselines(["zero-shot"], TRAIN_F, TRAIN_I, q, cfg)["zero-shot"] == out
