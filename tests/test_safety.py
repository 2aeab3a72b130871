"""Silent-miss metrics (radgpt.evaluation.safety) on hand-countable reports.

.venv/bin/pytest tests/test_safety.py -q
"""

import pytest

from radgpt.evaluation.safety import safety
from radgpt.model.labeler import label

NORMAL = "No acute cardiopulmonary abnormality."
# (findings, reference, draft, flags, flag observations)
CASES = [
    # 1. effusion stated in Findings and reference, carried; nothing flagged
    ("Small left pleural effusion. Heart normal.", "Small left effusion.", "Left pleural effusion.",
     [], []),
    # 2. effusion + cardiomegaly in both; the draft reads normal: a dangerous miss, flagged
    ("Mild cardiomegaly. Small right pleural effusion.", "Cardiomegaly. Right effusion.", NORMAL,
     ["omits_finding"], ["omits_finding:Cardiomegaly", "omits_finding:Pleural Effusion"]),
    # 3. pneumothorax in both, draft reads normal, no flag: a SILENT dangerous miss
    ("Small left apical pneumothorax.", "Small left pneumothorax.", NORMAL, [], []),
    # 4. normal report, the draft adds cardiomegaly: flagged and right (reference lacks it)
    ("Heart size normal. Lungs clear.", NORMAL, "Cardiomegaly.",
     ["adds_finding"], ["adds_finding:Cardiomegaly"]),
    # 5. normal report flagged for another reason, draft right: a flag with nothing behind it
    ("Heart size normal. Lungs clear.", NORMAL, NORMAL, ["repetition"], []),
    # 6. opacity in Findings only (not carried by the reference); draft omits it, flag is wrong
    ("Right basilar opacity. Heart normal.", NORMAL, NORMAL,
     ["omits_finding"], ["omits_finding:Lung Opacity"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def m():
    f, r, h, fl, obs = zip(*CASES, strict=True)
    return safety([label(x) for x in f], [label(x) for x in r], [label(x) for x in h], fl, obs)


def test_carry(m):
    # pairs (report, pathology) positive in Findings and reference: 1 + 2 + 1 = 4; carried: 1
    assert m["carry"] == {"both": 4, "carried": 1, "rate": 0.25}
    per = m["per_observation"]
    assert per["Pleural Effusion"]["both"] == 2 and per["Pleural Effusion"]["carried"] == 1
    assert per["Pneumothorax"]["carry"] == 0.0 and per["Edema"]["carry"] is None


def test_dangerous_and_silent(m):
    assert m["dangerous_misses"] == {"reports": 2, "silent": 1, "silent_share": 0.5}
    # omissions: reports 2 and 3 (report 6's reference states nothing)
    assert m["omissions"] == {"reports": 2, "silent": 1, "silent_share": 0.5}
    assert m["per_observation"]["Pneumothorax"]["dangerous_missed"] == 1


def test_flag_rate_and_precision(m):
    f = m["flags"]
    assert f["flagged"] == 4 and f["rate"] == pytest.approx(4 / 6)
    # right: report 2 (omission) and 4 (addition); wrong: 5 (nothing) and 6 (reference agrees)
    assert f["precision"] == 0.5
    assert f["by_flag"] == {"adds_finding": 1, "omits_finding": 2, "repetition": 1}
    assert f["omits_precision"] == pytest.approx(2 / 3) and f["adds_precision"] == 1.0
    per = m["per_observation"]
    assert (per["Lung Opacity"]["omits_flags"], per["Lung Opacity"]["omits_right"]) == (1, 0)
    assert per["Cardiomegaly"]["adds_precision"] == 1.0


def test_lengths_must_match():
    with pytest.raises(ValueError):
        safety([label("x")], [], [], [], [])
