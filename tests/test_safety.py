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


def test_carry_threshold_sweep_prices_each_threshold():
    """Consistency flags recomputed per threshold (text guards kept): cardiomegaly is carried
    (rate (9+1)/(10+2) = 0.83), pneumothorax rarely ((1+1)/(8+2) = 0.2)."""
    from radgpt.evaluation.tune import choose, sweep
    from radgpt.model.carry import CarryRates

    counts = {"Cardiomegaly": {"stated": 10, "carried": 9},
              "Pneumothorax": {"stated": 8, "carried": 1}}  # fmt: skip
    carry = CarryRates(counts)
    f, r, h, fl, _ = zip(*CASES, strict=True)
    find, refs, hyps = [label(x) for x in f], [label(x) for x in r], [label(x) for x in h]
    rows = sweep(find, find, refs, hyps, fl, carry, (0.1, 0.5, 0.9))
    by = {x["threshold"]: x for x in rows}
    # 0.1: both checked -> reports 2 (cardiomegaly) and 3 (pneumothorax) flagged omits_finding;
    # 4 keeps adds_finding, 5 keeps repetition; 6's stored omits (opacity, rate 0.5) is recomputed
    assert by[0.1]["usual"] == ["Cardiomegaly", "Pneumothorax"]
    assert (by[0.1]["flagged"], by[0.1]["silent_dangerous"], by[0.1]["silent_omissions"]) == (
        4,
        0,
        0,
    )
    # 0.5: only cardiomegaly: report 3's pneumothorax miss is silent again
    assert (by[0.5]["flagged"], by[0.5]["silent_dangerous"]) == (3, 1)
    # 0.9: nothing checked: both dangerous misses are silent, only the text/adds flags remain
    assert (by[0.9]["flagged"], by[0.9]["silent_dangerous"], by[0.9]["dangerous_misses"]) == (
        2,
        2,
        2,
    )
    assert choose(rows, max_flag_rate=1.0)["threshold"] == 0.1
    assert choose(rows, max_flag_rate=0.5)["threshold"] == 0.5  # 3 of 6 flagged fits, 4 does not
    assert choose(rows, max_flag_rate=0.2) is None


def test_reads_normal_precision_and_the_miss_it_unsilences():
    lucency = "Lungs clear. Vague lucency in the left 7th rib."
    cases = [  # (findings, reference, draft, flags): both drafts read normal
        (lucency, "Possible left rib fracture. Left rib fracture.", NORMAL, ["reads_normal"]),
        (lucency, NORMAL, NORMAL, ["reads_normal"]),  # the radiologist read it normal: wrong
        ("Small left apical pneumothorax.", "Small left pneumothorax.", NORMAL, []),
    ]
    f, r, h, fl = zip(*cases, strict=True)
    m = safety([label(x) for x in f], [label(x) for x in r], [label(x) for x in h], fl, [[]] * 3)
    assert m["flags"]["reads_normal_precision"] == 0.5
    assert m["dangerous_misses"] == {"reports": 2, "silent": 1, "silent_share": 0.5}
    assert m["flags"]["by_flag"] == {"reads_normal": 2}
    none = safety([label(x) for x in f], [label(x) for x in r], [label(x) for x in h],
                  [[]] * 3, [[]] * 3)  # fmt: skip
    assert none["flags"]["reads_normal_precision"] is None
    assert none["dangerous_misses"]["silent"] == 2
