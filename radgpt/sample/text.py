"""Synthetic chest X-ray report text: seeded templates, clinically coherent, no dataset text.

    from radgpt.sample.text import draw_cases
    cases = draw_cases(random.Random(0), n=200, mark="___")   # "___" MIMIC, "XXXX" OpenI/CSV
    cases[0].findings, cases[0].impression, cases[0].positives

A case is normal (40%) or has 1-3 abnormal findings drawn from KINDS (radgpt.sample.findings).
Findings render the positives in anatomical order (devices, lungs, pleura, heart, bones) among
negations of what is absent, so the text never contradicts itself; the Impression names every
positive (with its side). A few cases break the paper's cohort rules on purpose (DEFECTS: the
ingest's own RULES) and a few are exact duplicate pairs.
Used by the per-format writers of radgpt.sample (`radgpt sample --out var/sample`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from radgpt.ingest.rows import RULES
from radgpt.sample.findings import KINDS, NORMAL_IMPRESSIONS, Finding, cap, negations, pick

# cohort-rule violations injected on purpose: the ingest's exclusion reasons, in its order
DEFECTS = RULES
SURNAMES = "Adams|Baker|Chen|Diaz|Evans|Okafor|Patel|Novak"


# indication reason by the first positive kind that has one (sorted), else generic
REASONS = {
    "": "cough|shortness of breath|chest pain|fever|dyspnea|hypoxia|preoperative evaluation|"
    "weakness|cough and fever|history of CHF",
    "cvc": "new central line placement",
    "ett": "intubated, evaluate endotracheal tube position",
    "fracture": "fall with chest wall pain",
    "ng_tube": "nasogastric tube placement",
    "pneumothorax": "sudden chest pain, evaluate for pneumothorax",
    "consolidation": "fever and productive cough",
}
QUESTIONS = "r/o pneumonia|eval for acute process|eval for effusion|assess for interval change"
COMPARISONS = "None.|None available.|Chest radiograph [[date]].|PA and lateral chest radiographs "
COMPARISONS += "from [[date]].|[[date]]|-"  # "-": no comparison section at all


@dataclass
class Case:
    findings: str | None
    impression: str | None  # numbered items are separated by "\n"
    indication: str
    comparison: str | None
    technique: str
    exam: str  # MIMIC-style exam title, e.g. "CHEST (PA AND LAT)"
    portable: bool
    sex: str  # F | M
    positives: list[Finding] = field(default_factory=list)
    defect: str | None = None  # one of DEFECTS, "duplicate", or None

    @property
    def mesh(self) -> str:
        """IU `MeSH` column: "normal" or "Term/qualifier;Term/qualifier"."""
        return ";".join(dict.fromkeys(f.mesh for f in self.positives)) or "normal"

    @property
    def problems(self) -> str:
        """IU `Problems` column: the MeSH terms without qualifiers."""
        return ";".join(dict.fromkeys(f.mesh.split("/")[0] for f in self.positives)) or "normal"


def deid(text: str, r: random.Random, mark: str | None, memo: dict[str, str]) -> str:
    """Fill [[slot]] placeholders with the de-identification mark, or with synthetic values
    (one value per slot and case, kept in `memo`: the prior-study date is the same everywhere)."""

    def value(slot: str) -> str:
        if slot == "date":
            return f"{r.randint(1, 12):02d}/{r.randint(1, 28):02d}/{r.randint(2012, 2022)}"
        if slot == "age":
            return str(r.randint(22, 89))
        if slot == "name":
            return pick(r, SURNAMES)
        if slot == "time":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
        return slot.split(":", 1)[1]  # [[x:word]]: a word only IU's XXXX hides

    def fill(m: re.Match) -> str:
        slot = m.group(1)
        if mark is not None and (mark == "XXXX" or not slot.startswith("x:")):
            return mark
        if slot not in memo:
            memo[slot] = value(slot)
        return memo[slot]

    return re.sub(r"\[\[([a-z]+(?::[a-z-]+)?)\]\]", fill, text)


def draw_case(r: random.Random, mark: str | None, defect: str | None = None) -> Case:
    """One coherent report; a `defect` forces that cohort-rule violation."""
    normal = defect in ("findings_too_short", "impression_too_short") or r.random() < 0.4
    groups = [] if normal else r.choices(list(KINDS), [w for _, w in KINDS.values()], k=3)
    groups = list(dict.fromkeys(groups))[: r.choice((1, 1, 1, 2, 2, 3))]
    pos = [f for g in groups for f in KINDS[g][0](r)]
    kinds = {f.kind for f in pos} | set(groups)
    body = sorted([(f.slot, f.f) for f in pos] + negations(r, kinds), key=lambda t: t[0])
    findings = " ".join(s for _, s in body)
    if not pos:
        impression = pick(r, NORMAL_IMPRESSIONS)
    else:
        items = [f.i for f in sorted(pos, key=lambda f: not f.acute)]  # acute first
        if not any(f.acute for f in pos):
            items.insert(0, pick(r, NORMAL_IMPRESSIONS.rsplit("|", 2)[0]))
        if len(items) > 1 and r.random() < 0.5:
            impression = "\n".join(f"{k}. {s}" for k, s in enumerate(items, 1))
        else:
            impression = " ".join(items)
    if defect == "findings_too_short":
        findings = pick(
            r, "Lungs clear. No effusion.|Heart normal. Lungs are clear.|No acute findings."
        )
    elif defect == "impression_too_short":
        impression = pick(r, "Normal.|Negative.|Unremarkable.")
    portable = "devices" in groups or r.random() < 0.15
    sex = r.choice("FM")
    reason = pick(r, REASONS[next((k for k in sorted(kinds) if k in REASONS), "")])
    who, adj = ("woman", "female") if sex == "F" else ("man", "male")
    styles = [f"[[age]]-year-old {adj} with {reason}.", f"{cap(reason)}."]
    if mark == "___":  # MIMIC's "<history>  // <question>" indications
        styles.append(f"___ year old {who} with {reason}  // {pick(r, QUESTIONS)}")
    indication = r.choice(styles)
    comparison = pick(r, COMPARISONS)
    # IU style: the prior study named in Findings too (never lengthens a too-short Findings)
    if "[[date]]" in comparison and defect != "findings_too_short" and r.random() < 0.3:
        findings = "Comparison is made with the prior study dated [[date]]. " + findings
    if portable:
        technique, exam = "Portable AP upright view of the chest.", "CHEST (PORTABLE AP)"
    else:
        technique = pick(r, "Chest PA and lateral.|PA and lateral views of the chest.")
        exam = "CHEST (PA AND LAT)"
    comparison = None if comparison == "-" else comparison
    c = Case(findings, impression, indication, comparison, technique, exam, portable, sex, pos)
    c.defect = defect
    memo: dict[str, str] = {}
    for name in ("findings", "impression", "indication", "comparison"):
        v = getattr(c, name)
        setattr(c, name, None if v is None else deid(v, r, mark, memo))
    if defect == "no_findings":
        c.findings = None
    elif defect == "no_impression":
        c.impression = None
    return c


def plan_defects(r: random.Random, n: int) -> list[str | None]:
    """Which cases break a rule: n // 100 (at least 1 when n >= 10) per rule, and duplicates."""
    k = max(1, n // 100) if n >= 10 else 0
    plan: list[str | None] = [None] * n
    for j in r.sample(range(n // 2, n), k) if k else []:  # a duplicate copies an earlier case
        plan[j] = "duplicate"
    free = [j for j in range(n) if plan[j] is None]
    for d, j in zip([d for d in DEFECTS for _ in range(k)], r.sample(free, 4 * k), strict=True):
        plan[j] = d
    return plan


def draw_cases(r: random.Random, n: int, mark: str | None, defects: bool = True) -> list[Case]:
    """n cases; with defects, a few break cohort rules and a few duplicate an earlier pair."""
    cases: list[Case] = []
    clean: list[Case] = []  # the cases so far without a defect, in order (a duplicate's twins)
    for d in plan_defects(r, n) if defects else [None] * n:
        c = draw_case(r, mark, None if d == "duplicate" else d)
        if d == "duplicate":
            twin = r.choice(clean)  # was a new list of them per duplicate: quadratic in n
            c.findings, c.impression, c.positives = twin.findings, twin.impression, twin.positives
            c.defect = "duplicate"
        cases.append(c)
        if c.defect is None:
            clean.append(c)
    return cases
