"""The rule labeler on a table of tricky sentences (docs/labeler.md), and finding agreement.

.venv/bin/pytest tests/test_labeler.py -q
"""

import pytest

from radgpt.model.labeler import (
    ABSENT,
    NEG,
    OBSERVATIONS,
    POS,
    SUPPORT,
    UNC,
    agreement,
    clauses,
    label,
    states,
)

# (sentence, {observation: expected status}); observations not named must be absent,
# and "No Finding" is checked only where named.
CASES = [
    ("No pneumothorax.", {"Pneumothorax": NEG, "No Finding": POS}),
    ("No pleural effusion or pneumothorax.", {"Pleural Effusion": NEG, "Pneumothorax": NEG}),
    ("Without effusion.", {"Pleural Effusion": NEG}),
    ("Negative for pneumonia.", {"Pneumonia": NEG}),
    ("Lungs are free of consolidation.", {"Consolidation": NEG}),
    ("Resolved left pleural effusion.", {"Pleural Effusion": NEG, "No Finding": POS}),
    ("Interval resolution of the right lower lobe pneumonia.", {"Pneumonia": NEG}),
    ("Effusion has resolved.", {"Pleural Effusion": NEG}),
    ("Cannot exclude pneumonia.", {"Pneumonia": UNC, "No Finding": ABSENT}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": UNC}),
    ("Findings may represent atelectasis.", {"Atelectasis": UNC}),
    ("Possible small right effusion.", {"Pleural Effusion": UNC}),
    ("Questionable nodule in the right upper lobe.", {"Lung Lesion": UNC}),
    ("Atelectasis versus pneumonia.", {"Atelectasis": UNC, "Pneumonia": UNC}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": UNC}),
    # scope ends at "but", ";", sentence ends, "there is", and a comma before a new finding
    ("No pneumothorax, but small left effusion.", {"Pneumothorax": NEG, "Pleural Effusion": POS}),
    ("No pneumothorax; small left effusion.", {"Pneumothorax": NEG, "Pleural Effusion": POS}),
    ("No effusion. Mild cardiomegaly.", {"Pleural Effusion": NEG, "Cardiomegaly": POS}),
    (
        "No focal consolidation, small left effusion.",
        {"Consolidation": NEG, "Pleural Effusion": POS},
    ),
    (
        "No pneumothorax and there is a small effusion.",
        {"Pneumothorax": NEG, "Pleural Effusion": POS},
    ),
    # ...unless a list under the same negation runs on to an "or" (IU's usual negated list)
    (
        "No focal consolidation, large pleural effusion, or pneumothorax is identified.",
        {"Consolidation": NEG, "Pleural Effusion": NEG, "Pneumothorax": NEG, "No Finding": POS},
    ),
    (
        "Lungs clear without focal airspace opacity, large effusion or pneumothorax.",
        {"Lung Opacity": NEG, "Pleural Effusion": NEG, "Pneumothorax": NEG},
    ),
    (
        "No focal consolidation, small left effusion. No pneumothorax or edema.",
        {"Consolidation": NEG, "Pleural Effusion": POS, "Pneumothorax": NEG, "Edema": NEG},
    ),
    ("Possible atelectasis, no pneumothorax.", {"Atelectasis": UNC, "Pneumothorax": NEG}),
    ("Bibasilar atelectasis and no pneumothorax.", {"Atelectasis": POS, "Pneumothorax": NEG}),
    (
        "No displaced rib fractures, pneumothorax, or pleural effusion identified.",
        {"Fracture": NEG, "Pneumothorax": NEG, "Pleural Effusion": NEG, "No Finding": POS},
    ),
    ("Pneumothorax and effusion are not seen.", {"Pneumothorax": NEG, "Pleural Effusion": NEG}),
    ("Mild cardiomegaly, pneumothorax is not seen.", {"Cardiomegaly": POS, "Pneumothorax": NEG}),
    ("Stable left lower lung increased interstitial markings.", {"Lung Opacity": POS}),
    ("The interstitial markings are slightly accentuated.", {"Lung Opacity": POS}),
    ("No increased interstitial markings.", {"Lung Opacity": NEG}),
    ("Normal interstitial markings. Clear lungs.", {"Lung Opacity": NEG, "No Finding": POS}),
    ("Bilateral costophrenic XXXX blunting.", {"Pleural Effusion": POS}),
    ("The costophrenic XXXX are blunted.", {"Pleural Effusion": POS}),
    ("The costophrenic angles are not blunted.", {"Pleural Effusion": NEG}),
    # old or non-pulmonary infections are not pneumonia
    ("Evidence of prior granulomatous infection.", {"Pneumonia": ABSENT, "No Finding": POS}),
    ("Sequela of previous tuberculosis infection.", {"Pneumonia": ABSENT}),
    ("Right lower lobe infection.", {"Pneumonia": POS}),
    # pseudo-negation: "no change" still asserts the finding
    ("No change in mild cardiomegaly.", {"Cardiomegaly": POS, "No Finding": ABSENT}),
    ("Stable cardiomegaly without edema.", {"Cardiomegaly": POS, "Edema": NEG}),
    # phrasings of the heart and mediastinum
    ("Heart is not enlarged.", {"Cardiomegaly": NEG}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": POS}),
    ("Heart size mildly to moderately enlarged.", {"Cardiomegaly": POS}),
    ("Heart is large.", {"Cardiomegaly": POS}),
    ("The heart is not large.", {"Cardiomegaly": NEG}),
    ("Heart size is largely unchanged.", {}),
    ("Heart size is normal.", {"Cardiomegaly": NEG, "No Finding": POS}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": POS}),
    ("Mediastinum is not widened.", {"Enlarged Cardiomediastinum": NEG}),
    (
        "The cardiac silhouette and mediastinum size are within normal limits.",
        {"Enlarged Cardiomediastinum": NEG},
    ),
    # lexicon edges
    ("Small pericardial effusion.", {}),
    ("Kerley B lines consistent with CHF.", {"Edema": POS}),
    (
        "Right PICC line tip in the SVC. No acute disease.",
        {"Support Devices": POS, "No Finding": POS},
    ),
    ("Interval removal of the endotracheal tube.", {"Support Devices": NEG}),
    ("Left rib fractures.", {"Fracture": POS}),
    ("Moderate right hemopneumothorax.", {"Pneumothorax": POS}),
    ("Almost completely resolved apical pleural air collection.", {"Pneumothorax": NEG}),
    ("Right upper lobe opacity.", {"Lung Opacity": POS}),
    ("Right lower lobe consolidation.", {"Consolidation": POS}),
    ("Bilateral pleural thickening.", {"Pleural Other": POS}),
    ("Normal chest x-XXXX.", {"No Finding": POS}),
    ("No acute cardiopulmonary abnormality.", {"No Finding": POS}),
    # sentence without a space after the period
    ("Small left effusion.No pneumothorax.", {"Pleural Effusion": POS, "Pneumothorax": NEG}),
    # a disclaimer, not a finding (IU: "Please note that fractures may not be demonstrated")
    ("Please note that fractures may not be demonstrated.", {"Fracture": UNC}),
    # a dense or widened paratracheal stripe is mediastinal
    (
        "Right paratracheal stripe is denser and XXXX than normal.",
        {"Enlarged Cardiomediastinum": POS},
    ),  # fmt: skip
    ("Widening of the right paratracheal stripe.", {"Enlarged Cardiomediastinum": POS}),
    ("Normal paratracheal stripe.", {"Enlarged Cardiomediastinum": ABSENT, "No Finding": POS}),
]


@pytest.mark.parametrize("text,want", CASES, ids=[c[0][:40] for c in CASES])
def test_tricky_sentences(text, want):
    got = label(text)
    assert set(got) == set(OBSERVATIONS)
    for obs in OBSERVATIONS:
        if obs in want:
            assert got[obs] == want[obs], f"{obs}: {got[obs]} != {want[obs]}"
        elif obs != "No Finding":
            assert got[obs] == ABSENT, f"{obs} should be absent, got {got[obs]}"


def test_old_findings_read_as_uncertain_when_asked():
    text = "Old healed left rib fractures. Small right pleural effusion."
    assert label(text)["Fracture"] == POS  # the labeler's reading: a fracture is a fracture
    got = label(text, old_as_uncertain=True)
    assert (got["Fracture"], got["Pleural Effusion"]) == (UNC, POS)
    # a new fracture beside an old one stays positive; a negated old one stays negative
    assert label("Old rib fractures. Acute right clavicle fracture.", True)["Fracture"] == POS
    assert label("No old fracture.", True)["Fracture"] == NEG
    # fractures only: "prior" elsewhere is the comparison study
    assert label("Opacities worse than on the prior study.", True)["Lung Opacity"] == POS


def test_states_follows_the_hierarchy():
    imp = label("Right lower lobe pneumonia.")
    assert states(imp, "Consolidation") and states(imp, "Lung Opacity")
    assert not states(imp, "Pleural Effusion") and not states(imp, "Consolidation", (NEG,))
    for o, readings in SUPPORT.items():  # symmetric: a reading of a reading is the thing
        assert all(o in SUPPORT[r] for r in readings)


def test_no_finding_rules():
    assert label("")["No Finding"] == POS  # nothing stated: normal
    assert label("Large right pneumothorax.")["No Finding"] == ABSENT
    assert label("Possible pneumonia.")["No Finding"] == ABSENT  # uncertain is not normal
    assert label("Endotracheal tube in place.")["No Finding"] == POS  # devices do not count


def test_mentions_aggregate_positive_over_uncertain_over_negative():
    assert label("No effusion on the left. Small right effusion.")["Pleural Effusion"] == POS
    assert label("No effusion. Possible effusion.")["Pleural Effusion"] == UNC


def test_clauses_split_at_sentence_and_scope_ends():
    assert clauses("No effusion; 1.5 cm nodule, but no mass.") == [
        "no effusion",
        "1.5 cm nodule",
        "but no mass",
    ]


def test_agreement_f1_and_dangerous_misses():
    refs = [
        label(t)
        for t in ["Small left effusion.", "Cardiomegaly. Small effusion.", "No acute disease."]
    ]
    hyps = [label(t) for t in ["No acute disease.", "Cardiomegaly.", "Small effusion."]]
    a = agreement(refs, hyps)
    eff, card = a["per_observation"]["Pleural Effusion"], a["per_observation"]["Cardiomegaly"]
    assert (eff["tp"], eff["fp"], eff["fn"]) == (0, 1, 2)
    assert (card["tp"], card["fp"], card["fn"]) == (1, 0, 0) and card["f1"] == 1.0
    nf = a["per_observation"]["No Finding"]
    assert (nf["tp"], nf["fp"], nf["fn"]) == (0, 1, 1)
    # micro over all pairs: TP=1, FP=2, FN=3 -> 2/(2+2+3)
    assert a["micro_f1"] == pytest.approx(2 / 7)
    # macro over the 3 defined observations: (0 + 1 + 0) / 3
    assert a["macro_f1"] == pytest.approx(1 / 3)
    assert a["per_observation"]["Fracture"]["f1"] is None
    # report 1: reference effusion, draft reads normal -> one dangerous miss; report 2 is not normal
    assert a["dangerous_miss_reports"] == 1 and a["dangerous_miss_findings"] == 1
    # perfect agreement
    p = agreement(refs, refs)
    assert p["micro_f1"] == 1.0 and p["dangerous_miss_reports"] == 0
    # uncertain as positive turns an uncertain draft into a hit
    u = agreement([label("Pneumonia.")], [label("Possible pneumonia.")], uncertain_as_positive=True)
    assert u["per_observation"]["Pneumonia"]["tp"] == 1
    with pytest.raises(ValueError):
        agreement(refs, hyps[:1])


@pytest.mark.data
def test_labels_agree_with_iu_mesh_tags(iu_csv):
    """On the real IU X-ray Impressions, labels agree with the indexers' independent MeSH tags."""
    import time

    import pandas as pd

    df = pd.read_csv(iu_csv).dropna(subset=["impression"])
    t0 = time.time()
    labs = [label(t) for t in df["impression"]]
    assert time.time() - t0 < 30  # ~3,000 Impressions in seconds
    df["nf"] = [x["No Finding"] for x in labs]
    normal = df[df["MeSH"] == "normal"]
    assert len(normal) > 1000 and (normal["nf"] == POS).mean() > 0.98
    for mesh, obs, floor in [("Pleural Effusion", "Pleural Effusion", 0.85),
                             ("Cardiomegaly", "Cardiomegaly", 0.65),
                             ("Atelectasis", "Atelectasis", 0.65)]:  # fmt: skip
        tagged = df["MeSH"].str.contains(mesh, regex=False).to_numpy()
        found = pd.Series([x[obs] in (POS, UNC) for x in labs])
        assert found[tagged].mean() > floor, mesh  # tags also come from Findings: not 100%
        assert found[(df["MeSH"] == "normal").to_numpy()].mean() < 0.005, mesh
