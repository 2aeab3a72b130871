"""CheXpert-style rule labeler: 14 observations -> positive / negative / uncertain / absent.

    from radgpt.model.labeler import label, agreement
    label("No pneumothorax. Cannot exclude pneumonia.")  # {"Pneumothorax": "negative", "Pneumonia": "uncertain", ...}

The rules (mentions, negation and uncertainty cues, scope) are documented in docs/labeler.md;
tests/test_labeler.py holds the table of tricky sentences they must get right. No maintained
clinical NLP package runs offline here (negspacy/medspacy need spaCy and its model downloads;
the CheXpert/NegBio labeler is not packaged), so the rules are our own, CheXpert-shaped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
POS, NEG, UNC, ABSENT = "positive", "negative", "uncertain", "absent"
# the observations that are pathologies: all but the "No Finding" summary and Support Devices
PATHOLOGIES = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))
# CheXpert's numeric coding (absent = blank)
CODE = {POS: 1, NEG: 0, UNC: -1, ABSENT: None}

_MED = r"(?:heart|cardiac(?: silhouette| size)?|cardiomediastinal silhouette)"
_MEDIA = r"(?:cardio)?mediastin\w*(?: silhouette| contours?)?"
_GRADE = r"(?:mildly|moderately|markedly|severely|slightly|minimally)"
_DEGREE = rf"(?:{_GRADE}(?: to {_GRADE})? |again |now )?"  # "mildly to moderately enlarged"

# observation -> mention regexes (lower case text; each match is one mention)
MENTIONS: dict[str, list[str]] = {
    "Enlarged Cardiomediastinum": [
        r"\b(?:widen\w*|enlarge\w*|prominen\w*) (?:of the )?(?:cardio)?mediastin\w*",
        r"\bmediastinal (?:widening|enlargement|prominence)",
        rf"\b{_MEDIA} (?:is |are |appears? |remains? )?(?:not )?{_DEGREE}(?:widened|enlarged|prominent)",
        # a widened or dense paratracheal stripe: mediastinal (often nodes), IU says it this way
        r"\bparatracheal (?:stripe|soft tissues?) (?:is |are |appears? |remains? )?(?:\w+ )?"
        r"(?:denser|dense|widened|wide|thickened|thick|prominent)\b",
        r"\b(?:widen\w*|thicken\w*|prominen\w*) (?:of )?(?:the )?(?:right |left )?paratracheal",
    ],
    "Cardiomegaly": [
        r"\bcardiomegaly\b",
        r"\benlarge\w* (?:of the )?(?:heart|cardiac silhouette|cardiac size)\b",
        rf"\b{_MED} (?:size )?(?:is |are |appears? |remains? )?(?:not )?{_DEGREE}(?:enlarged|increased|large)\b",
    ],
    "Lung Opacity": [
        r"\bopaci(?:ty|ties|fication|fied)\b",
        r"\binfiltrat\w*",
        r"\b(?:airspace|air space) (?:disease|process)\b",
        r"\bdensit(?:y|ies)\b",
        r"\bhaz(?:y|iness)\b",
        # CheXpert counts interstitial markings as lung opacity; here only when said to be abnormal
        r"\b(?:increased|prominen\w*|accentuated|coarse\w*|reticular)(?: [\w-]+){0,3} interstitial"
        r" (?:lung )?(?:markings?|pattern|changes?)",
        r"\binterstitial (?:lung )?markings? (?:are |is |appears? |remains? )?(?:\w+ )?"
        r"(?:increased|prominent|accentuated|coarse\w*)",
        r"\binterstitial prominence\b",
    ],
    "Lung Lesion": [
        r"\bnodul(?:e|es|ar)\b",
        r"\bmass(?:es)?\b",
        r"\b(?:cavitary )?lesions?\b",
        r"\b(?:tumor|tumour|neoplasm|carcinoma|malignancy)s?\b",
    ],
    "Edema": [
        r"\bedema\b",
        r"\b(?:pulmonary )?(?:vascular )?congestion\b",
        r"\b(?:congestive )?heart failure\b",
        r"\bchf\b",
        r"\bfluid overload\b",
        r"\bkerley\b",
    ],
    "Consolidation": [r"\bconsolidat(?:ion|ions|ive|ed)\b"],
    "Pneumonia": [
        r"\b(?:broncho)?pneumonias?\b",
        r"\binfecti(?:on|ons|ous)(?: process)?\b",
    ],
    "Atelectasis": [r"\batelecta\w*", r"\bcollapse[d]?\b"],
    "Pneumothorax": [
        r"\b(?:hemo|hydro)?pneumothora(?:x|ces)\b",
        r"\bptx\b",
        r"\bpleural air\b",
    ],
    "Pleural Effusion": [
        r"\b(?<!pericardial )(?:pleural )?effusions?\b",
        r"\bpleural fluid\b",
        r"\bblunt\w* (?:of )?(?:the )?(?:\w+ )?costophrenic",
        # IU de-identification can replace "angle(s)" by XXXX: "costophrenic XXXX blunting"
        r"\bcostophrenic (?:\w+ )?blunting\b",
        r"\bcostophrenic (?:\w+ )?(?:is |are |appears? |remains? )?(?:\w+ )?blunted\b",
    ],
    "Pleural Other": [
        r"\bpleural (?:thickening|plaques?|scarring|calcification)s?\b",
        r"\bfibrothorax\b",
    ],
    "Fracture": [r"\bfractur\w*", r"\bfx\b"],
    "Support Devices": [
        r"\b(?:endotracheal|nasogastric|orogastric|feeding|chest|tracheostomy|et|ng|og|dobhoff) tubes?\b",
        r"\b(?:picc|central|venous|arterial|port|ij|subclavian|jugular|swan[- ]ganz)"
        r" (?:venous )?(?:lines?|catheters?)\b",
        r"\bcatheters?\b",
        r"\b(?:pacemaker|pacer|defibrillator|aicd|icd)s?\b",
        r"\b(?:pacer|pacemaker|pacing|cardiac) leads?\b",
        r"\b(?:sternotomy|sternal) wires?\b",
        r"\b(?:surgical )?clips\b",
        r"\bstents?\b",
        r"\b(?:prosthetic valve|valve replacement|port-a-cath|portacath|hardware)\b",
    ],
}

# whole-phrase "normal" statements -> negative for these observations
NORMALS: list[tuple[str, tuple[str, ...]]] = [
    (
        rf"\b{_MED} (?:size )?(?:is |are |appears? |remains? )?(?:normal|within normal limits)\b"
        rf"|\bnormal (?:heart|cardiac) (?:size|silhouette)\b",
        ("Cardiomegaly",),
    ),
    (
        rf"\b{_MEDIA}(?: and \w+)?(?: size)? (?:is |are |appears? |remains? )?"
        rf"(?:normal|within normal limits|unremarkable)\b|\bnormal {_MEDIA}",
        ("Enlarged Cardiomediastinum",),
    ),
    (r"\blungs? (?:is |are |remain )?clear\b|\bclear lungs\b", ("Lung Opacity",)),
]

# cues, longest alternatives first so "can not exclude" wins over "not"
PRE_UNC = [
    r"cannot (?:be )?(?:exclude|excluded|rule out|ruled out)",
    r"can ?not (?:be )?(?:exclude|excluded|rule out|ruled out)",
    r"difficult to (?:exclude|rule out)",
    r"not (?:entirely |completely )?(?:exclude|rule out)",
    r"(?:may|might|could) (?:represent|reflect|be|indicate)",
    r"(?:suspicious|suggestive|concerning|worrisome) (?:for|of)",
    r"(?:concern|question) (?:for|of)",
    r"rule out|r/o",
    r"possibl[ey]|probabl[ey]|likely|questionable|equivocal|borderline|suspected|presumed",
    r"differential|versus|vs\.?|may|might|could|\?",
]
PRE_NEG = [
    r"no evidence of|negative for|free of|absence of|clear of|resolution of|removal of",
    r"no longer|without|resolved|no|not|absent",
]
POST_UNC = [
    r"(?:cannot|can not|could not|not) (?:be )?(?:entirely |completely )?(?:excluded|ruled out)",
    r"(?:is|are) (?:possible|suspected|questioned|not excluded)",
    r"(?:may|might|could) be (?:present|seen)",
    # "fractures may not be demonstrated": a hedge that they could be there unseen
    r"(?:may|might|could) not be (?:seen|identified|demonstrated|visible|evident|appreciated|detected)",
    r"versus|vs\.?|\?",
]
POST_NEG = [
    r"(?:is|are|was|were|has been|have been)? ?(?:not|no longer) "
    r"(?:seen|identified|demonstrated|present|visualized|visible|evident|appreciated|noted)",
    r"(?:has|have)? ?(?:resolved|cleared)|(?:is|are|has been|have been)? ?(?:absent|removed)",
]
# pseudo-negations: "no change in cardiomegaly" still asserts cardiomegaly
PSEUDO = re.compile(
    r"\b(?:no|without) (?:significant |appreciable |substantial |other )?(?:interval )?change\b"
    r"|\bnot (?:significantly )?changed\b|\bnot only\b"
)
# old or non-pulmonary infections are not pneumonia: "Evidence of prior granulomatous infection"
# (IU's calcified granulomas), "prior tuberculosis infection", "osseous infection"
OLD_INFECTION = re.compile(
    r"\b(?:(?:prior|previous|old|remote|healed) (?:(?:granulomatous|tuberculo\w*|histoplasm\w*) )?"
    r"|granulomatous |osseous )infect\w*"
)
# an observation -> those that are readings of the same thing (the CheXpert hierarchy: lung opacity
# is the parent of edema, consolidation, pneumonia, lesion, atelectasis; consolidation of
# pneumonia; enlarged cardiomediastinum of cardiomegaly; symmetric): "patchy opacity" in the
# Findings -> "pneumonia" in the Impression is the radiologist's reading, neither an invented
# finding nor a dropped one
SUPPORT: dict[str, tuple[str, ...]] = {
    "Lung Opacity": ("Edema", "Consolidation", "Pneumonia", "Lung Lesion", "Atelectasis"),
    "Edema": ("Lung Opacity",),
    "Consolidation": ("Lung Opacity", "Pneumonia"),
    "Pneumonia": ("Lung Opacity", "Consolidation"),
    "Lung Lesion": ("Lung Opacity",),
    "Atelectasis": ("Lung Opacity",),
    "Cardiomegaly": ("Enlarged Cardiomediastinum",),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}
# a fracture called old in its clause: radiologists rarely carry it (IU train: none of 27 old or
# healed fractures reach the Impression, 13 of 27 others); "healing" is recent, not old. Other
# findings: "prior"/"previous" name the comparison study ("worse than on the prior study") and
# chronic lung disease is carried, so OLD reads fractures only
OLD = re.compile(r"\b(?:old|healed|remote|chronic|prior|previous|remodeled)\b")
OLD_READS = ("Fracture",)
# clause boundaries: sentence ends, ';', and words that end a negation's scope
_SENT = re.compile(r"\.(?!\d)|;|\n|:(?=\s)|!")
_TERM = re.compile(
    r"\b(?:but|however|although|though|except|apart from|aside from|other than|which|"
    r"there (?:is|are)|otherwise)\b"
)
# a comma or "and" that starts a new positive statement ends the scope too: "No effusion, small
# pneumothorax"; unless a list under the same negation runs on to an "or": "No consolidation,
# large pleural effusion, or pneumothorax" negates all three
_TERM_NEW = re.compile(
    r"(?:,|\band\b)(?= (?:and )?(?:mild|moderate|severe|small|large|new|increased|increasing|worsening|"
    r"persistent|unchanged|stable|minimal|trace|tiny|residual|slight|marked)\b)"
)
_LIST_OR = re.compile(r"\bor\b")


def _alt(parts: Sequence[str]) -> str:
    return "|".join(parts)


_PRE = re.compile(rf"\b(?:(?P<unc>{_alt(PRE_UNC)})|(?P<neg>{_alt(PRE_NEG)}))(?!\w)")
# up to 4 words may sit between mention and post cue ("pneumothorax and effusion are not seen"),
# but no comma ("mild cardiomegaly, pneumothorax is not seen" leaves cardiomegaly positive)
_POST = re.compile(
    rf"^[^\w,]*(?:[\w-]+[^\w,]+){{0,4}}?(?:(?P<unc>{_alt(POST_UNC)})|(?P<neg>{_alt(POST_NEG)}))(?!\w)"
)
_MENTION = {k: [re.compile(p) for p in v] for k, v in MENTIONS.items()}
_NORMAL = [(re.compile(p), obs) for p, obs in NORMALS]


def clauses(text: str) -> list[str]:
    """Lower-cased clauses: split at sentence ends and ';', then before scope terminators."""
    out = []
    low = OLD_INFECTION.sub(" ", PSEUDO.sub(" ", (text or "").lower()))
    for sent in _SENT.split(low):
        hard = [m.start() for m in _TERM.finditer(sent)]
        soft = []
        for m in _TERM_NEW.finditer(sent):
            end = min([h for h in hard if h > m.start()] + [len(sent)])
            if not _LIST_OR.search(sent, m.end(), end):
                soft.append(m.start())
        cuts = [0, *sorted(hard + soft), len(sent)]
        out += [sent[a:b].strip(" ,") for a, b in zip(cuts, cuts[1:], strict=False)]
    return [c for c in out if c]


def _status(clause: str, start: int, end: int) -> str:
    """Status of one mention at clause[start:end]: nearest pre cue, else a close post cue."""
    pre = None
    for m in _PRE.finditer(clause[:end]):  # cues inside the span count ("heart is not enlarged")
        pre = m
    post = _POST.search(clause[end:])
    kinds = {m.lastgroup for m in (pre, post) if m is not None}
    if "unc" in kinds:
        return UNC
    return NEG if "neg" in kinds else POS


def _merge(a: str, b: str) -> str:
    """CheXpert aggregation over mentions: positive > uncertain > negative > absent."""
    order = {ABSENT: 0, NEG: 1, UNC: 2, POS: 3}
    return a if order[a] >= order[b] else b


def label(text: str | None, old_as_uncertain: bool = False) -> dict[str, str]:
    """Label one report section (an Impression) for the 14 observations.

    old_as_uncertain: a positive mention of a fracture (OLD_READS) in a clause that calls it old
    (OLD: healed, chronic, remote...) counts as uncertain: stated, but not a finding to carry
    (radgpt.model.carry.findings_labels, the review flags' reading of the Findings)."""
    out = dict.fromkeys(OBSERVATIONS, ABSENT)
    for c in clauses(text or ""):
        old = old_as_uncertain and OLD.search(c) is not None
        for obs, pats in _MENTION.items():
            for p in pats:
                for m in p.finditer(c):
                    st = _status(c, m.start(), m.end())
                    st = UNC if old and st == POS and obs in OLD_READS else st
                    out[obs] = _merge(out[obs], st)
        for p, observations in _NORMAL:
            if p.search(c):
                for obs in observations:
                    out[obs] = _merge(out[obs], NEG)
    # No Finding: nothing but support devices is positive or uncertain
    found = any(
        out[o] in (POS, UNC) for o in OBSERVATIONS if o not in ("No Finding", "Support Devices")
    )
    out["No Finding"] = ABSENT if found else POS
    return out


def states(labels: dict[str, str], obs: str, how: Collection[str] = (POS, UNC)) -> bool:
    """labels (of one text) state obs or a reading of it (SUPPORT) with a status in `how`."""
    return any(labels[o] in how for o in (obs, *SUPPORT.get(obs, ())))


def mentions(text: str | None, obs: str) -> list[tuple[int, int]]:
    """(start, end) of each mention of obs in text, whatever its status: for highlighting."""
    low = (text or "").lower()
    if len(low) != len(text or ""):  # lower() changed the length (rare non-ASCII): no offsets
        return []
    spans = {m.span() for p in _MENTION.get(obs, []) for m in p.finditer(low)}
    return sorted(spans)


def label_many(texts: Iterable[str | None]) -> list[dict[str, str]]:
    return [label(t) for t in texts]


def _f1(tp: int, fp: int, fn: int) -> float | None:
    d = 2 * tp + fp + fn
    return None if d == 0 else 2 * tp / d


def agreement(
    refs: Sequence[dict[str, str]],
    hyps: Sequence[dict[str, str]],
    uncertain_as_positive: bool = False,
) -> dict:
    """Finding agreement of draft labels with reference labels over positive findings.

    Per observation: TP/FP/FN of "positive" (optionally uncertain too) over reports; micro F1 over
    all (report, observation) pairs; macro F1 = mean over observations with any positive in either
    side (others are undefined and left out). Dangerous miss: the reference has a positive
    pathology (not No Finding / Support Devices) that the draft does not have positive AND the
    draft reads as normal (No Finding positive).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} reference labels vs {len(hyps)} draft labels")
    pos = {POS, UNC} if uncertain_as_positive else {POS}
    per: dict[str, dict] = {}
    TP = FP = FN = 0
    for obs in OBSERVATIONS:
        tp = sum(r[obs] in pos and h[obs] in pos for r, h in zip(refs, hyps, strict=True))
        fp = sum(r[obs] not in pos and h[obs] in pos for r, h in zip(refs, hyps, strict=True))
        fn = sum(r[obs] in pos and h[obs] not in pos for r, h in zip(refs, hyps, strict=True))
        per[obs] = {"tp": tp, "fp": fp, "fn": fn, "support": tp + fn, "f1": _f1(tp, fp, fn)}
        TP, FP, FN = TP + tp, FP + fp, FN + fn
    defined = [v["f1"] for v in per.values() if v["f1"] is not None]
    pathologies = [o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices")]
    missed_reports = missed_findings = 0
    for r, h in zip(refs, hyps, strict=True):
        if h["No Finding"] != POS:
            continue
        n = sum(r[o] == POS and h[o] != POS for o in pathologies)
        missed_reports += n > 0
        missed_findings += n
    return {
        "micro_f1": _f1(TP, FP, FN),
        "macro_f1": sum(defined) / len(defined) if defined else None,
        "per_observation": per,
        "dangerous_miss_reports": missed_reports,
        "dangerous_miss_findings": missed_findings,
        "n": len(refs),
    }
