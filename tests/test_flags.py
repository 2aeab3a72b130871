"""Review flags on hand-made drafts: each guard fires on its failure and stays quiet on a good draft.

.venv/bin/pytest tests/test_flags.py -q
"""

from radgpt.draft.flags import FLAGS, review, review_flags

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


def test_runs_on_into_the_next_turn_or_prompt_block():
    # drafts of a broken adapter (two adapters' updates averaged): the chat template's next turn,
    # its special tokens dropped by decoding, glued to the Impression
    assert flags("Small left pleural effusion.user\n1. Small left effusion.") == ["runs_on"]
    assert "runs_on" in flags("Left effusion.systemsystemsystemsystem")
    assert flags("Small left pleural effusion.\nassistant") == ["runs_on"]
    # the few-shot examples' format: a new example or Findings block
    assert flags("Left effusion.\n\nExample 4\nFindings: the heart is normal.") == ["runs_on"]
    assert flags("Left effusion.\nFindings: small left effusion.") == ["runs_on"]
    # the same words inside a sentence are a radiologist's
    for good in ("Findings consistent with a small left effusion.",
                 "Normal nervous system.", "Left effusion, as on the example 2 view."):  # fmt: skip
        assert "runs_on" not in flags(good), good


def test_order_matches_vocabulary():
    got = flags("right right right right right right right right right right right", "left", True)
    assert got == [f for f in FLAGS if f in got]
    assert set(got) == {"truncated", "repetition", "longer_than_findings", "laterality_mismatch"}


# clinical consistency flags: the labeler reads Findings and draft; `usual` = observations that
# radiologists usually carry into the Impression (radgpt.model.carry)
EFFUSION = (
    "Heart size normal. Small left pleural effusion. No pneumothorax. Mild degenerative spine."
)
USUAL = {"Pleural Effusion", "Cardiomegaly", "Pneumothorax", "Lung Opacity"}


def consistency(draft, findings=EFFUSION, usual=USUAL):
    return review(findings, draft, truncated=False, instruction=INST, usual=usual)


def test_omits_finding_fires_when_a_usually_carried_finding_is_dropped():
    r = consistency("No acute cardiopulmonary abnormality.")
    assert r.flags == ["omits_finding"]
    assert r.observations == ["omits_finding:Pleural Effusion"]


def test_omits_finding_quiet_when_stated_or_hedged_or_not_usually_carried():
    assert consistency("Small left pleural effusion.") == ([], [])
    assert consistency("Possible small left effusion.").flags == []  # uncertain counts as stated
    assert consistency("No acute disease.", usual={"Cardiomegaly"}) == ([], [])
    # a finding the Findings only hedge is not required
    assert consistency("No acute disease.", "Possible small left effusion. Heart normal.") == (
        [],
        [],
    )


def test_omits_finding_reads_the_hierarchy_and_skips_old_findings():
    consolidation = "Focal consolidation in the right lower lobe. Heart size normal."
    usual = {"Consolidation"}
    r = consistency("No acute cardiopulmonary abnormality.", consolidation, usual)
    assert r.observations == ["omits_finding:Consolidation"]
    # "pneumonia" is the radiologist's reading of it: carried, and not an added finding
    assert consistency("Right lower lobe pneumonia.", consolidation, usual) == ([], [])
    old = "Old healed left rib fractures. Lungs are clear."
    # an old fracture is not one to carry; naming it adds nothing either
    assert consistency("No acute disease.", old, {"Fracture"}) == ([], [])
    assert consistency("Old left rib fractures.", old, {"Fracture"}) == ([], [])
    acute = "Mildly displaced fracture of the mid right clavicle. Lungs are clear."
    assert consistency("No acute findings.", acute, {"Fracture"}).flags == ["omits_finding"]


def test_adds_finding_fires_on_a_negated_or_unmentioned_finding():
    r = consistency("Small left pleural effusion. Right pneumothorax.")
    assert r.flags == ["laterality_mismatch", "adds_finding"]
    assert r.observations == ["adds_finding:Pneumothorax"]  # negated in the Findings
    r = consistency("Small left pleural effusion and cardiomegaly.")
    assert r.observations == ["adds_finding:Cardiomegaly"]  # the Findings say the heart is normal
    r = consistency("Small left pleural effusion. Rib fracture.")
    assert r.observations == ["adds_finding:Fracture"]  # never mentioned


def test_adds_finding_quiet_when_the_findings_imply_it():
    opacity = "Patchy opacity in the right lower lobe. Heart size normal. No effusion."
    assert consistency("Right lower lobe pneumonia.", opacity, usual=set()) == ([], [])
    assert consistency("Possible pneumonia.", "Heart normal. Lungs clear.", usual=set()) == ([], [])


def test_both_consistency_flags_and_their_order():
    r = consistency("Cardiomegaly.")
    assert r.flags == ["omits_finding", "adds_finding"]
    assert r.observations == ["omits_finding:Pleural Effusion", "adds_finding:Cardiomegaly"]
    assert consistency("").flags == ["empty"]  # an empty draft is flagged empty, nothing more


def test_review_flags_keeps_the_text_guards_only():
    assert review_flags(EFFUSION, "Cardiomegaly.", truncated=False, instruction=INST) == []
    assert set(FLAGS) >= {"omits_finding", "adds_finding"}
