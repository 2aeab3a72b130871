"""The reads_normal check: the abnormal model (radgpt.model.abnormal) learned with the carry rates,
stored in carry_rates.json, and the flag it drives in drafting and evaluation.

    .venv/bin/pytest tests/test_abnormal.py -q
"""

from __future__ import annotations

import json

import pytest

from radgpt.draft.flags import FLAGS, review
from radgpt.model import abnormal
from radgpt.model.carry import CarryRates
from radgpt.model.labeler import PATHOLOGIES, POS, label

NORMAL_F = ["Heart size normal. Lungs are clear. No pleural effusion or pneumothorax.",
            "The cardiomediastinal silhouette is normal. The lungs are clear bilaterally.",
            "Normal heart size. No focal airspace disease. No effusion."]  # fmt: skip
# "lucency" and "deformity": words the labeler has no rule for; radiologists call them fractures
ODD_F = ["Heart size normal. Lungs are clear. Vague lucency in the left {n}th rib.",
         "Normal heart size. Lungs clear. Deformity of the right {n}th rib with lucency."]  # fmt: skip
NORMAL_I = ["No acute cardiopulmonary abnormality.", "Normal chest.", "No acute disease."]
ODD_I = ["Left rib fracture.", "Right rib fracture."]
UNIQUE = "zygomorphic"  # in one train report only: below abnormal.MIN_DF, never stored


def train() -> tuple[list[str], list[str]]:
    f, i = [], []
    for n in range(30):
        f.append(NORMAL_F[n % 3] + (f" {UNIQUE}." if n == 0 else ""))
        i.append(NORMAL_I[n % 3])
    for n in range(4, 14):
        f.append(ODD_F[n % 2].format(n=n))
        i.append(ODD_I[n % 2])
    return f, i


def test_the_model_reads_what_the_labeler_has_no_rule_for():
    f, i = train()
    m = abnormal.fit(f, i)
    new = ["Normal heart. Lungs are clear. Subtle lucency in the right 9th rib.",
           "Heart size normal. The lungs are clear. No effusion."]  # fmt: skip
    assert not any(label(new[0])[o] == POS for o in PATHOLOGIES)  # nothing for a rule to flag
    p = abnormal.prob(m, new)
    assert p.shape == (2,) and p[0] > 0.5 > p[1]
    assert m["reports"] == 40 and m["positive"] == 10
    # the vocabulary: n-grams of at least MIN_DF train reports; a rarer word is not kept
    assert "lucency" in m["terms"] and UNIQUE not in m["terms"]
    assert len(m["terms"]) == len(m["idf"]) == len(m["weights"])


def test_no_model_without_evidence():
    f, i = train()
    assert abnormal.fit(f[:30], i[:30]) is None  # one class only
    assert abnormal.fit(f[25:35], i[25:35]) is None  # too few reports
    assert abnormal.fit([], []) is None
    with pytest.raises(ValueError, match="lengths"):
        abnormal.fit(f, i[:-1])


def test_stored_with_the_carry_rates_and_in_their_digest(tmp_path):
    f, i = train()
    c = CarryRates.fit(f, i)
    assert c.model == abnormal.fit(f, i)
    c.save(tmp_path)
    back = CarryRates.load(tmp_path)
    assert back == c and back.digest == c.digest
    assert back.abnormal(f[-2:]) == pytest.approx(list(abnormal.prob(c.model, f[-2:])))
    assert UNIQUE not in (tmp_path / "carry_rates.json").read_text()
    # the same counts with another model are another artifact
    assert CarryRates(c.counts, c.source, None).digest != c.digest
    assert CarryRates(c.counts).abnormal(["x", "y"]) == [None, None]
    # thresholds: 1 = off; without a model nothing reads abnormal
    assert c.reads_abnormal(f[-1:], 0.5) == [True] and c.reads_abnormal(f[-1:], 1.0) == [False]
    assert CarryRates(c.counts).reads_abnormal(f[-1:], 0.0) == [False]
    # a file without the model (carry-rates-v2) is refused with the command that refits it
    obj = json.loads((tmp_path / "carry_rates.json").read_text())
    (tmp_path / "carry_rates.json").write_text(json.dumps({**obj, "kind": "carry-rates-v2"}))
    with pytest.raises(ValueError, match="refit it with `radgpt models carry-rates"):
        CarryRates.load(tmp_path)


def test_reads_normal_flags_a_normal_draft_only():
    f = "Heart size normal. Lungs are clear. Vague lucency in the left 7th rib."
    kw = {"truncated": False, "instruction": "Derive the impression.", "usual": {"Fracture"}}
    assert review(f, "No acute cardiopulmonary abnormality.", **kw, abnormal=True).flags == [
        "reads_normal"
    ]
    assert review(f, "No acute cardiopulmonary abnormality.", **kw, abnormal=False).flags == []
    assert review(f, "Possible left rib fracture.", **kw, abnormal=True).flags == []
    assert review(f, "", **kw, abnormal=True).flags == ["empty"]
    # with other flags: in FLAGS order, last
    got = review("Small left pleural effusion.", "Right side normal.", **kw, abnormal=True).flags
    assert got == ["laterality_mismatch", "reads_normal"] and got == [x for x in FLAGS if x in got]


def test_postprocess_flags_with_the_adapters_model(tmp_path, tiny_model_dir):
    """Drafting's review stage reads the model from the run's carry rates, at
    draft.abnormal_threshold."""
    from transformers import AutoTokenizer

    from radgpt.config import DraftCfg, load_config
    from radgpt.draft.stages import Postprocess
    from radgpt.model.spec import ModelSpec

    f, i = train()
    c = CarryRates.fit(f, i)
    c.save(tmp_path / "adapter")
    cfg = load_config(overrides={"paths.root": str(tmp_path), "model.base": str(tiny_model_dir),
                                 "model.adapter": None})  # fmt: skip
    spec = ModelSpec.resolve(cfg, None).model_copy(
        update={"adapter_dir": str(tmp_path / "adapter"), "carry_digest": c.digest}
    )
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    out = {"draft": "No acute cardiopulmonary abnormality.", "truncated": False}
    odd = "Normal heart size. Lungs clear. Lucency in the right 5th rib."
    for t, want in ((0.5, ["reads_normal"]), (1.0, [])):
        post = Postprocess(spec, tok, {}, DraftCfg(abnormal_threshold=t))
        assert post.review(odd, out).flags == want
        assert post.review(NORMAL_F[0], out).flags == []
    with pytest.raises(RuntimeError, match="carry rates"):  # changed since the run began
        Postprocess(spec.model_copy(update={"carry_digest": "0" * 16}), tok, {}, DraftCfg())


def test_a_run_without_the_model_says_the_flag_is_off(tmp_path, caplog):
    f, i = train()
    CarryRates.fit(f[25:35], i[25:35]).save(tmp_path / "few")  # too few reports for a model
    CarryRates.fit(f, i).save(tmp_path / "enough")
    with caplog.at_level("WARNING", logger="radgpt.model.carry"):
        assert CarryRates.for_adapter(tmp_path / "few", tmp_path / "table").model is None
    assert "reads_normal is off" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="radgpt.model.carry"):
        assert CarryRates.for_adapter(tmp_path / "enough", tmp_path / "table").model
    assert "reads_normal" not in caplog.text
