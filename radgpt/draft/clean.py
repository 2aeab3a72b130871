"""Postprocess cleaning of a generated Impression: stray punctuation and empty sentences out.

    from radgpt.draft.clean import clean, CLEAN_VERSION
    clean("Clear lungs. No acute cardiopulmonary abnormality. .")
    # -> "Clear lungs. No acute cardiopulmonary abnormality."

Rules (CLEAN_VERSION "clean-v1"), applied line by line, words never change:
    1. runs of spaces/tabs -> one space; lines stripped; blank lines dropped
    2. no space before . , ; : ! ?                       "abnormality ." -> "abnormality."
    3. a run of punctuation marks separated by nothing or spaces (an empty sentence) -> one mark:
       the run's "." if it has one, else its first mark   "abnormality. ." -> "abnormality."
    4. punctuation opening a line goes                     ". No effusion." -> "No effusion."
    5. a line ending in , ; or : ends in "." instead       "No effusion," -> "No effusion."
    6. a list number with nothing after it goes            "1. No effusion.\n2." -> "1. No effusion."
clean(clean(x)) == clean(x). The version joins the generation settings (provenance, draft id); the
drafts table keeps the raw generation in `draft_raw` when cleaning changed it.
"""

from __future__ import annotations

import re

CLEAN_VERSION = "clean-v1"

_SPACES = re.compile(r"[ \t\r\f\v]+")
_SPACE_BEFORE = re.compile(r" +(?=[.,;:!?])")
_RUN = re.compile(r"[.,;:!?](?: *[.,;:!?])+")
_LEAD = re.compile(r"^[.,;:!? ]+")
_EMPTY_ITEM = re.compile(r"^\d+[.)]?$")
_TAIL = re.compile(r"[,;:]+$")


def _run(m: re.Match) -> str:
    marks = m.group(0).replace(" ", "")
    return "." if "." in marks else marks[0]


def _line(line: str) -> str:
    s = _SPACES.sub(" ", line).strip()
    s = _SPACE_BEFORE.sub("", s)
    s = _RUN.sub(_run, s)
    s = _TAIL.sub(".", _LEAD.sub("", s))
    return "" if _EMPTY_ITEM.match(s) else s


def clean(text: str | None) -> str:
    """The cleaned draft (see the module doc); "" when nothing but punctuation and spaces."""
    lines = (_line(x) for x in (text or "").split("\n"))
    return "\n".join(x for x in lines if x)


def _none(text: str | None) -> str:
    return text or ""


# draft.clean -> cleaning step (radgpt.config.DraftCfg.clean lists the same names)
CLEANERS = {CLEAN_VERSION: clean, "none": _none}
