"""The findings a synthetic report can have: phrase builders per kind, and the negations of the rest.

    from radgpt.sample.findings import KINDS, negations
    pos = KINDS["effusion"][0](r)       # [Finding(kind, side, f=Findings sentence, i=Impression, mesh)]

Findings render the positives in anatomical order (slot: devices, lungs, pleura, heart, bones)
among negations of what is absent, so the text never contradicts itself. Used by
radgpt.sample.text (draw_case).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LOBES = "right upper lobe|right middle lobe|right lower lobe|left upper lobe|left lower lobe"
ADVERB = {
    "mild": "mildly",
    "moderate": "moderately",
    "severe": "severely",
    "borderline": "borderline",
}


def pick(r: random.Random, options: str) -> str:
    """One of the "|"-separated phrasings."""
    return r.choice(options.split("|"))


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


@dataclass
class Finding:
    kind: str
    side: str | None  # left | right | bilateral | None
    f: str  # the Findings sentence
    i: str  # the Impression sentence
    mesh: str  # IU-style MeSH with qualifiers, e.g. "Pleural Effusion/left/small"
    slot: int  # Findings order: 0 devices, 1 lungs, 2 pleura, 3 heart/mediastinum, 4 bones/other
    acute: bool = True


def _lobe(r: random.Random, term: str) -> tuple[str, str, str]:
    """(lobe, side, IU MeSH "Term/lung/upper lobe/right")."""
    lobe = pick(r, LOBES)
    side, part = lobe.split(" ", 1)
    return lobe, side, f"{term}/lung/{part}/{side}"


def _cardiomegaly(r: random.Random) -> list[Finding]:
    sev = pick(r, "borderline|mild|moderate|severe")
    adv = ADVERB[sev]
    f = pick(
        r,
        f"The heart is {adv} enlarged.|{cap(sev)} cardiomegaly.|The cardiac silhouette is {adv} "
        f"enlarged.|There is {sev} enlargement of the cardiac silhouette.",
    )
    i = pick(r, f"{cap(sev)} cardiomegaly.|{cap(sev)} enlargement of the cardiac silhouette.")
    return [Finding("cardiomegaly", None, f, i, f"Cardiomegaly/{sev}", 3)]


def _effusion(r: random.Random) -> list[Finding]:
    side, size = pick(r, "left|right|bilateral"), pick(r, "small|moderate|large")
    if side == "bilateral":
        f = pick(
            r, f"{cap(size)} bilateral pleural effusions.|There are {size} bilateral effusions."
        )
        i = f"{cap(size)} bilateral pleural effusions."
    else:
        f = pick(
            r,
            f"There is a {size} {side} pleural effusion.|{cap(size)} {side} pleural effusion.|"
            f"{cap(size)} {side}-sided pleural effusion is present.|Blunting of the {side} "
            f"costophrenic angle is consistent with a {size} pleural effusion.",
        )
        i = pick(
            r, f"{cap(size)} {side} pleural effusion.|{cap(size)} {side}-sided pleural effusion."
        )
    return [Finding("effusion", side, f, i, f"Pleural Effusion/{side}/{size}", 2)]


def _pneumothorax(r: random.Random) -> list[Finding]:
    side, size = pick(r, "left|right"), pick(r, "tiny|small|moderate|large")
    f = pick(
        r,
        f"There is a {size} {side} apical pneumothorax.|A {size} {side} pneumothorax is present.|"
        f"{cap(size)} {side}-sided pneumothorax.",
    )
    i = f"{cap(size)} {side} pneumothorax."
    if r.random() < 0.5:  # critical result: MIMIC-style notification, name/time de-identified
        i += " Findings were discussed with Dr. [[name]] by telephone at [[time]]."
    return [Finding("pneumothorax", side, f, i, f"Pneumothorax/{side}/{size}", 2)]


def _consolidation(r: random.Random) -> list[Finding]:
    lobe, side, mesh = _lobe(r, "Airspace Disease")
    f = pick(
        r,
        f"There is focal consolidation in the {lobe}.|Patchy airspace opacity in the {lobe} is "
        f"concerning for pneumonia.|New consolidation is seen in the {lobe}.",
    )
    i = pick(
        r,
        f"{cap(lobe)} consolidation, concerning for pneumonia.|{cap(lobe)} pneumonia.|"
        f"Findings concerning for {lobe} pneumonia.",
    )
    return [Finding("consolidation", side, f, i, mesh, 1)]


def _atelectasis(r: random.Random) -> list[Finding]:
    side = pick(r, "left|right|bilateral")
    f = pick(
        r,
        f"{cap(side)} basilar opacity most consistent with atelectasis.|Mild {side} basilar "
        f"atelectasis.|Linear opacities at the {side} lung base are compatible with "
        "subsegmental atelectasis.",
    )
    i = f"{cap(side)} basilar atelectasis."
    return [Finding("atelectasis", side, f, i, f"Pulmonary Atelectasis/base/{side}", 1)]


def _edema(r: random.Random) -> list[Finding]:
    sev = pick(r, "mild|moderate|severe")
    f = pick(
        r,
        f"There is {sev} pulmonary edema.|Increased interstitial markings and vascular congestion "
        f"are consistent with {sev} pulmonary edema.|{cap(sev)} interstitial pulmonary edema.",
    )
    return [Finding("edema", None, f, f"{cap(sev)} pulmonary edema.", f"Pulmonary Edema/{sev}", 1)]


def _nodule(r: random.Random) -> list[Finding]:
    mm = r.randint(4, 25)
    lobe, side, mesh = _lobe(r, "Nodule")
    f = pick(
        r,
        f"A {mm} mm nodule projects over the {lobe}.|There is a {mm} mm nodular opacity in the {lobe}.",
    )
    i = f"{mm} mm {lobe} nodule."
    if mm >= 8:
        i += " Recommend nonemergent chest CT for further evaluation."
    return [Finding("nodule", side, f, i, mesh, 1)]


def _emphysema(r: random.Random) -> list[Finding]:
    f = pick(
        r,
        "The lungs are hyperinflated with flattening of the diaphragms, consistent with emphysema."
        "|Hyperinflated lungs are compatible with emphysema.|The lungs are hyperexpanded with "
        "increased retrosternal airspace.",
    )
    i = pick(r, "Hyperinflated lungs consistent with emphysema.|Emphysema.|Hyperinflation.")
    mesh = pick(r, "Emphysema|Lung/hyperdistention")
    return [Finding("emphysema", None, f, i, mesh, 1, False)]


def _fracture(r: random.Random) -> list[Finding]:
    side, k = pick(r, "left|right"), r.randint(3, 10)
    if r.random() < 0.5:
        f = pick(
            r,
            f"There is an acute-appearing fracture of the {side} {ordinal(k)} rib.|"
            f"Healing fracture of the {side} {ordinal(k)} rib.",
        )
        i = f"{cap(side)} {ordinal(k)} rib fracture."
    else:
        ribs = f"{ordinal(k)} and {ordinal(k + 1)}"
        f = f"Nondisplaced fractures of the {side} {ribs} ribs."
        i = f"{cap(side)} {ribs} rib fractures."
    return [Finding("fracture", side, f, i, f"Fractures, Bone/ribs/{side}", 4)]


def _device(r: random.Random, dev: str) -> Finding:
    if dev == "ett":
        cm = r.randint(2, 7)
        f = pick(
            r,
            f"Endotracheal tube terminates {cm} cm above the carina.|The endotracheal tube tip is "
            f"{cm} cm above the carina.",
        )
        i = f"Endotracheal tube tip {cm} cm above the carina."
        if cm < 3:
            i += " Consider withdrawal by 1-2 cm."
        return Finding("ett", None, f, i, "Tube, Inserted", 0, False)
    if dev == "cvc":
        side, vein = pick(r, "left|right"), pick(r, "internal jugular|subclavian")
        tip = pick(r, "mid SVC|cavoatrial junction|proximal right atrium")
        f = pick(
            r,
            f"{cap(side)} {vein} central venous catheter terminates in the {tip}.|A {side} {vein} "
            f"central line is present with its tip in the {tip}.",
        )
        i = f"{cap(side)} {vein} central venous catheter with tip in the {tip}."
        return Finding("cvc", side, f, i, "Catheters, Indwelling", 0, False)
    if dev == "pacemaker":
        side = pick(r, "left|left|right")
        leads = pick(r, "right atrium and right ventricle|right ventricle")
        f = pick(
            r,
            f"{cap(side)}-sided pacemaker with leads terminating in the {leads}.|A {side} chest "
            f"wall pacemaker is present with leads in the {leads}.",
        )
        i = f"{cap(side)}-sided pacemaker with leads in the {leads}."
        return Finding("pacemaker", side, f, i, "Pacemaker, Artificial", 0, False)
    if r.random() < 0.8:
        f = pick(
            r,
            "Enteric tube courses below the diaphragm with the tip in the stomach.|"
            "Nasogastric tube tip projects over the stomach.",
        )
        i = "Nasogastric tube tip in the stomach."
    else:  # malpositioned
        f = "Nasogastric tube tip is in the distal esophagus."
        i = "Nasogastric tube tip in the distal esophagus; recommend advancing by at least 10 cm."
    return Finding("ng_tube", None, f, i, "Tube, Inserted", 0, False)


def _devices(r: random.Random) -> list[Finding]:
    devs = sorted(r.sample(("ett", "cvc", "pacemaker", "ng_tube"), r.choice((1, 1, 2))))
    return [_device(r, d) for d in devs]


def _degenerative(r: random.Random) -> list[Finding]:
    f = pick(
        r,
        "Degenerative changes are seen in the thoracic spine.|Mild degenerative changes of the "
        "thoracic spine.|Multilevel degenerative disc disease of the thoracic spine.",
    )
    i = pick(r, "Degenerative changes of the thoracic spine.|Thoracic spine degenerative disease.")
    return [Finding("degenerative", None, f, i, "Thoracic Vertebrae/degenerative", 4, False)]


def _hernia(r: random.Random) -> list[Finding]:
    size = pick(r, "small|moderate|large")
    f = pick(
        r,
        f"A {size} hiatal hernia is noted.|Retrocardiac soft tissue density with an air-fluid "
        f"level is consistent with a {size} hiatal hernia.",
    )
    i = f"{cap(size)} hiatal hernia."
    return [Finding("hernia", None, f, i, f"Hernia, Hiatal/{size}", 3, False)]


def _granuloma(r: random.Random) -> list[Finding]:
    lobe, side, mesh = _lobe(r, "Calcified Granuloma")
    f = pick(
        r,
        f"A calcified granuloma is seen in the {lobe}.|Calcified granuloma projects over the {lobe}.",
    )
    i = pick(
        r,
        f"Calcified granuloma in the {lobe}, sequela of prior granulomatous disease.|"
        f"{cap(lobe)} calcified granuloma.",
    )
    return [Finding("granuloma", side, f, i, mesh, 1, False)]


def _sternotomy(r: random.Random) -> list[Finding]:
    f = pick(
        r,
        "Median sternotomy wires are intact.|The patient is status post median sternotomy and "
        "CABG.|Intact median sternotomy wires and mediastinal clips.",
    )
    i = pick(r, "Post-surgical changes of median sternotomy.|Status post median sternotomy.")
    return [Finding("sternotomy", None, f, i, "Sternotomy", 3, False)]


# group -> (builder, draw weight); "devices" expands to 1-2 device findings
KINDS = {
    "cardiomegaly": (_cardiomegaly, 10),
    "effusion": (_effusion, 10),
    "pneumothorax": (_pneumothorax, 4),
    "consolidation": (_consolidation, 8),
    "atelectasis": (_atelectasis, 9),
    "edema": (_edema, 6),
    "nodule": (_nodule, 5),
    "emphysema": (_emphysema, 5),
    "fracture": (_fracture, 3),
    "devices": (_devices, 8),
    "degenerative": (_degenerative, 8),
    "hernia": (_hernia, 3),
    "granuloma": (_granuloma, 6),
    "sternotomy": (_sternotomy, 5),
}
LUNG_KINDS = {"consolidation", "atelectasis", "edema", "nodule", "emphysema", "granuloma"}
NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.|No acute cardiopulmonary abnormality.|No acute "
    "intrathoracic process.|No acute cardiopulmonary disease.|No evidence of acute cardiopulmonary "
    "disease.|Normal chest [[x:radiograph]]."
)


def negations(r: random.Random, kinds: set[str]) -> list[tuple[int, str]]:
    """(slot, sentence) negating what is absent; never contradicts a positive kind."""
    out: list[tuple[int, str]] = []
    if not kinds & LUNG_KINDS:
        lungs = "The lungs are clear.|The lungs are well expanded and clear.|Lungs are clear bilaterally."
        out.append((1, pick(r, lungs + "|There is no focal consolidation.")))
    elif "consolidation" not in kinds and r.random() < 0.7:
        out.append(
            (1, pick(r, "No focal consolidation.|There is no focal airspace consolidation."))
        )
    if "edema" not in kinds and r.random() < 0.5:
        out.append((1, pick(r, "There is no pulmonary edema.|No pulmonary vascular congestion.")))
    eff, ptx = "effusion" in kinds, "pneumothorax" in kinds
    if not eff and not ptx:
        both = "No pleural effusion or pneumothorax.|There is no pleural effusion or pneumothorax."
        out.append((2, pick(r, both + "|No pneumothorax or pleural effusion is seen.")))
    elif not eff:
        out.append((2, pick(r, "No pleural effusion.|There is no pleural effusion.")))
    elif not ptx:
        out.append((2, pick(r, "No pneumothorax.|There is no pneumothorax.")))
    if "cardiomegaly" not in kinds:
        heart = "The heart size is normal.|Heart size is within normal limits.|Normal heart size."
        out.append(
            (3, pick(r, heart + "|The cardiomediastinal silhouette is within normal limits."))
        )
    if r.random() < 0.5:
        hila = "The mediastinal and hilar contours are unremarkable.|Hilar contours are normal."
        out.append((3, pick(r, hila)))
    if "fracture" not in kinds and r.random() < 0.6:
        bones = "No acute osseous abnormality.|No displaced rib fractures are seen."
        if "degenerative" not in kinds:
            bones += "|The osseous structures are intact."
        out.append((4, pick(r, bones)))
    if r.random() < 0.2:
        out.append((4, "The visualized upper abdomen is unremarkable."))
    return out
