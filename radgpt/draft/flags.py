"""Quality guards on a drafted Impression -> review flags (recorded, never silently "fixed").

    from radgpt.draft.flags import review_flags
    review_flags(findings, draft, truncated=False, instruction=TASKS["impression"])  # -> ["laterality_mismatch"]

Flags (the drafts schema's vocabulary, in this order):
    empty                 no words in the draft
    truncated             generation hit max_new_tokens before EOS
    repetition            a loop: a 3-word phrase 3+ times, or a 3+ char chunk repeated 4+ times in a row
    longer_than_findings  more words than the Findings it summarizes
    laterality_mismatch   says left/right where the Findings name neither that side nor "bilateral"
    echoes_instruction    contains 4+ consecutive words of the prompt's instruction
"""

from __future__ import annotations

import re
from collections import Counter

FLAGS = (
    "empty",
    "truncated",
    "repetition",
    "longer_than_findings",
    "laterality_mismatch",
    "echoes_instruction",
)

_WORD = re.compile(r"[a-z0-9]+")
_CHUNK_LOOP = re.compile(r"(.{3,}?)\1{3,}", re.S)  # "abcabcabcabc": a chunk repeated 4+ times


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


def review_flags(
    findings: str | None, draft: str, *, truncated: bool, instruction: str
) -> list[str]:
    """Review flags for one draft, in FLAGS order; [] = nothing to review."""
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
    return out
