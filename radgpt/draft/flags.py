"""Quality guards on a drafted Impression -> review flags (recorded, never silently "fixed").

    from radgpt.draft.flags import review, review_flags
    review_flags(findings, draft, truncated=False, instruction=TASKS["impression"])  # -> ["laterality_mismatch"]
    review(findings, draft, truncated=False, instruction=..., usual=carry.usual(0.5))
    # -> Review(flags=["omits_finding"], observations=["omits_finding:Pleural Effusion"])
    review(findings, "No acute disease.", ..., abnormal=True)  # -> flags ["reads_normal"]

Flags (the drafts schema's vocabulary, in this order):
    empty                 no words in the draft
    truncated             generation hit max_new_tokens before EOS
    repetition            a loop: a 3-word phrase 3+ times, or a 3+ char chunk repeated 4+ times in a row
    longer_than_findings  more words than the Findings it summarizes
    laterality_mismatch   says left/right where the Findings name neither that side nor "bilateral"
    echoes_instruction    contains 4+ consecutive words of the prompt's instruction
    runs_on               goes on past its end into the prompt's scaffolding: a chat role ("user",
                          "assistant", "system") as a line or right after a sentence's end
                          ("No active disease.user"), or a new "Findings:" / "Example N" block
    omits_finding         the Findings state a finding positively that radiologists usually carry
                          into the Impression (radgpt.model.carry rate >= draft.carry_threshold),
                          and the draft states neither it nor a reading of it (positive or
                          uncertain; labeler.SUPPORT: consolidation -> pneumonia...)
    adds_finding          the draft states a finding positively that the Findings negate or never
                          mention, nor a reading of it (SUPPORT: opacity -> pneumonia...)
    reads_normal          the draft reads normal (labeler: No Finding) where the Findings read
                          abnormal: P(the radiologist's Impression states a pathology | Findings)
                          >= draft.abnormal_threshold (radgpt.model.abnormal, learned with the
                          carry rates): dangerous misses no finding-level rule names (infiltrates
                          that "have resolved" -> resolving edema)

The last two are clinical consistency flags: the rule labeler (radgpt.model.labeler) reads the
Findings (as radgpt.model.carry.findings_labels: an old fracture is stated, not one to carry)
and the draft; the observations behind them are `<flag>:<observation>` strings
("omits_finding:Pleural Effusion"), the drafts table's `flag_observations`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from typing import NamedTuple

from radgpt.model.carry import findings_labels
from radgpt.model.labeler import POS, label, states

FLAGS = (
    "empty",
    "truncated",
    "repetition",
    "longer_than_findings",
    "laterality_mismatch",
    "echoes_instruction",
    "runs_on",
    "omits_finding",
    "adds_finding",
    "reads_normal",
)
CONSISTENCY = ("omits_finding", "adds_finding")

_WORD = re.compile(r"[a-z0-9]+")
_CHUNK_LOOP = re.compile(r"(.{3,}?)\1{3,}", re.S)  # "abcabcabcabc": a chunk repeated 4+ times
# the next turn of a chat template (its role header; the special tokens around it are not text)
_ROLE = re.compile(
    r"(?:^|[.!?:])[ \t]*(?:user|assistant|system)(?=user|assistant|system|[ \t]*$)", re.I | re.M
)
# the next block of the prompt: the template's "Example {n}" / "Findings: ..." lines
_BLOCK = re.compile(r"^[ \t]*(?:findings[ \t]*:|example[ \t]+\d+[ \t]*$)", re.I | re.M)


def words(text: str | None) -> list[str]:
    return _WORD.findall((text or "").lower())


def _ngrams(ws: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]


def is_repetitive(text: str) -> bool:
    ws = words(text)
    grams = Counter(_ngrams(ws, 3))
    if grams and max(grams.values()) >= 3:
        return True
    return bool(_CHUNK_LOOP.search(text))


def runs_on(text: str) -> bool:
    return bool(_ROLE.search(text) or _BLOCK.search(text))


def sides(ws: list[str]) -> set[str]:
    s = {w for w in ws if w in ("left", "right")}
    if "bilateral" in ws or "bilaterally" in ws or "both" in ws:
        s |= {"left", "right"}
    return s


def echoes(instruction: str, draft_words: list[str], n: int = 4) -> bool:
    inst = words(instruction)
    if not inst:
        return False
    n = min(n, len(inst))
    return bool(set(_ngrams(inst, n)) & set(_ngrams(draft_words, n)))


def consistency(
    findings: dict[str, str], draft: dict[str, str], usual: Collection[str]
) -> list[str]:
    """`<flag>:<observation>` for the labels of the Findings (carry.findings_labels) and of the
    draft (labeler order)."""
    out = []
    for o, s in findings.items():
        if o != "No Finding" and s == POS and o in usual and not states(draft, o):
            out.append(f"omits_finding:{o}")
    for o, s in draft.items():
        if o != "No Finding" and s == POS and not states(findings, o):
            out.append(f"adds_finding:{o}")
    return out


class Review(NamedTuple):
    flags: list[str]  # FLAGS order
    observations: list[str]  # "<flag>:<observation>" behind the consistency flags


def review(
    findings: str | None,
    draft: str,
    *,
    truncated: bool,
    instruction: str,
    usual: Collection[str] = (),
    abnormal: bool = False,
) -> Review:
    """Review flags for one draft and the observations behind them; usual = observations to carry;
    abnormal = the Findings read abnormal (CarryRates.abnormal >= draft.abnormal_threshold)."""
    d = label(draft) if words(draft) else None
    obs = consistency(findings_labels(findings), d, usual) if d else []
    kinds = {x.split(":", 1)[0] for x in obs}
    flags = review_flags(findings, draft, truncated=truncated, instruction=instruction)
    flags += [f for f in CONSISTENCY if f in kinds]
    if abnormal and d and d["No Finding"] == POS:
        flags.append("reads_normal")
    return Review(flags, obs)


def review_flags(
    findings: str | None, draft: str, *, truncated: bool, instruction: str
) -> list[str]:
    """The text guards (all flags but the consistency ones), in FLAGS order; [] = nothing to review."""
    dw, fw = words(draft), words(findings)
    out = []
    if not dw:
        out.append("empty")
    if truncated:
        out.append("truncated")
    if dw and is_repetitive(draft):
        out.append("repetition")
    if fw and len(dw) > len(fw):
        out.append("longer_than_findings")
    if sides(dw) - sides(fw):
        out.append("laterality_mismatch")
    if dw and echoes(instruction, dw):
        out.append("echoes_instruction")
    if dw and runs_on(draft):
        out.append("runs_on")
    return out
