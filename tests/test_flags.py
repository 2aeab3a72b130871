"""Review flags on hand-made drafts: each guard fires on its failure and stays quiet on a good draft.

.venv/bin/pytest tests/test_flags.py -q
"""

from radgpt.draft.flags import FLAGS, review_flags

INST = "Derive the impression from findings in the radiology report"
FIND = (
    "The heart size is normal. Small left pleural effusion. No pneumothorax. Lungs otherwise clear."
)


def flags(draft, findings=FIND, truncated=False):
    return review_flags(findings, draft, truncated=truncated, instruction=INST)


def test_good_draft_has_no_flags():
    assert flags("Small left pleural effusion.") == []


def test_empty_and_truncated():
    assert flags("") == ["empty"]
    assert flags("  ... \n") == ["empty"]
    assert flags("Small left", truncated=True) == ["truncated"]


def test_repetition_loops():
    assert "repetition" in flags("no acute disease no acute disease no acute disease")
    assert "repetition" in flags("effusion" * 6)
    assert "repetition" not in flags("No acute cardiopulmonary disease. No effusion.")


def test_longer_than_findings():
    short = "Heart normal. Lungs clear."
    assert "longer_than_findings" in flags("Normal heart size and clear lungs bilaterally.", short)
    assert "longer_than_findings" not in flags("Normal chest.", short)


def test_laterality():
    assert flags("Small right pleural effusion.") == ["laterality_mismatch"]
    assert "laterality_mismatch" not in flags("Left effusion.")
    both = "Bilateral pleural effusions with cardiomegaly and basilar atelectasis noted."
    assert "laterality_mismatch" not in flags("Right effusion.", both)


def test_echoes_instruction():
    got = flags("Derive the impression from findings: effusion.")
    assert got == ["echoes_instruction"]
    assert "echoes_instruction" not in flags("Impression: left effusion.")


def test_order_matches_vocabulary():
    got = flags("right right right right right right right right right right right", "left", True)
    assert got == [f for f in FLAGS if f in got]
    assert set(got) == {"truncated", "repetition", "longer_than_findings", "laterality_mismatch"}
