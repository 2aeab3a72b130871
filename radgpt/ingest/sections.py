"""Section parser for free-text radiology reports: headers -> normalized section names.

    from radgpt.ingest import sections
    secs = sections.parse(report_text)  # {"indication": ..., "findings": ..., "impression": ...}
    findings, impression = sections.pick(secs, conclusion=fhir_conclusion)

Try it: `.venv/bin/python -m radgpt.ingest.sections < report.txt` prints the sections as JSON.

Policy (one place, used by every source):
- A header is a known name (FINDINGS, IMPRESSION, CONCLUSION, HISTORY, ...; any case) followed by
  ':' with text on the same line or below, or a known name alone on its line without ':'.
  An unknown ALL-CAPS name with ':' at line start (WET READ:, NOTIFICATION:) starts a snake_cased
  section too, except inside findings/impression, where ALL-CAPS labels are template subheadings
  (LUNGS: Clear.) and stay part of the text.
- Text before the first header is "preamble" (never findings). Banner lines (MIMIC's "FINAL
  REPORT", which may follow a WET READ section) are dropped wherever they stand.
- CONCLUSION -> impression; SUMMARY -> impression only when the report has no impression.
- A repeated section (two IMPRESSION blocks, IMPRESSION + CONCLUSION) is joined with a newline.
- Section values are normalize()d; empty sections are dropped.
"""

from __future__ import annotations

import re
import sys

# header spelling (lower case, single spaces) -> normalized section name
KNOWN = {
    "findings": "findings",
    "finding": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "summary",
    "indication": "indication",
    "indications": "indication",
    "clinical indication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "reason for study": "indication",
    "history": "history",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparison study": "comparison",
    "comparison studies": "comparison",
    "technique": "technique",
    "examination": "examination",
    "exam": "examination",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
    "recommendation(s)": "recommendation",
    "addendum": "addendum",
    "notification": "notification",
    "wet read": "wet_read",
    "findings and impression": "findings_impression",
    "findings/impression": "findings_impression",
    "findings & impression": "findings_impression",
    "impression and findings": "findings_impression",
    "impression/findings": "findings_impression",
}
BODY = {"findings", "impression", "findings_impression", "summary"}  # keep ALL-CAPS subheadings
BANNERS = {"final report", "preliminary report", "wet read report"}  # banner lines, dropped
IMPRESSION_LIKE = ("impression", "conclusion", "summary")  # pick() order

# "NAME: rest" at line start; NAME is letters/spaces/()/&'- up to 40 chars
_HEAD = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z /&()'-]{0,40}?)\s*:(?P<rest>.*)$")
# "NAME" alone on its line (known names only), optional trailing ':' or '-'
_ALONE = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z /&()'-]{0,40}?)\s*[:-]?\s*$")
# an ALL-CAPS known header in the middle of a line after a sentence end: "... clear. IMPRESSION:"
_INLINE = re.compile(
    r"(?<=[.!?])\s+(?=(?:FINDINGS|IMPRESSION|CONCLUSION|RECOMMENDATIONS?)\s*:)",
)
_LIST = re.compile(r"^(?:\d{1,2}[.)]|[-*\u2022])\s+")  # "1. ", "2) ", "- ", "* ", "• "
_NUM = re.compile(r"(?:(?<=\s)|^)(\d{1,2})[.)]\s+")  # inline numbered items


def canon(name: str) -> str:
    """Normalized section name of a header spelling: 'CLINICAL HISTORY' -> 'history'."""
    key = " ".join(name.lower().split())
    if key in KNOWN:
        return KNOWN[key]
    return re.sub(r"[^a-z0-9]+", "_", key).strip("_") or "section"


def _header(line: str, current: str | None) -> tuple[str, str] | None:
    """(section name, text after the header) when `line` is a header, else None."""
    m = _HEAD.match(line) if ":" in line else None  # the cheap test first: most lines are prose
    if m:
        name = " ".join(m["name"].split())
        if name.lower() in KNOWN:
            return KNOWN[name.lower()], m["rest"]
        # unknown: ALL-CAPS, at most 4 words, and not a subheading inside a body section
        if name.isupper() and len(name.split()) <= 4 and current not in BODY:
            return canon(name), m["rest"]
        return None
    # a name alone has at most 42 non-space characters (name <= 41, then ':' or '-')
    if len(line) > 42 and sum(map(len, line.split())) > 42:
        return None
    m = _ALONE.match(line)
    key = " ".join(m["name"].lower().split()) if m else None
    return (KNOWN[key], "") if key in KNOWN else None


def _banner(line: str) -> bool:
    low = line.lower()  # every banner ends in "report": skip the split for other lines
    return "report" in low and " ".join(low.split()) in BANNERS


def parse(text: str | None) -> dict[str, str]:
    """Split a report into {section name: normalized text}; see the module docstring."""
    if not text:
        return {}
    lines = _INLINE.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    blocks: list[tuple[str, list[str]]] = [("preamble", [])]
    for line in lines:
        h = _header(line, blocks[-1][0])
        if h is None:
            blocks[-1][1].append(line)
        else:
            blocks.append((h[0], [h[1]]))
    out: dict[str, str] = {}
    for name, body in blocks:
        val = _normalize([ln for ln in body if not _banner(ln)])  # lines hold no '\r' or '\n'
        if val:
            out[name] = f"{out[name]}\n{val}" if name in out else val
    if "impression" not in out and "summary" in out:
        out["impression"] = out.pop("summary")
    return out


def _split_numbered(line: str) -> list[str]:
    """'1. a. 2. b.' -> ['1. a.', '2. b.'] when the numbers run 1, 2, 3...; else [line]."""
    if line[:2] not in ("1.", "1)"):  # the first item must open the line; most lines are prose
        return [line]
    ms = list(_NUM.finditer(line))
    if not ms or ms[0].start() != 0 or ms[0][1] != "1":
        return [line]
    keep = [ms[0]]
    for m in ms[1:]:
        if int(m[1]) == int(keep[-1][1]) + 1:
            keep.append(m)
    if len(keep) < 2:
        return [line]
    cuts = [m.start() for m in keep] + [len(line)]
    return [line[a:b].strip() for a, b in zip(cuts, cuts[1:], strict=False)]


def normalize(text: str | None) -> str:
    """Collapse whitespace and unwrap lines; list items ('1. ...', '- ...') one per line.

    Plain prose becomes a single line. Numbered/bulleted text becomes one line per item joined
    by '\\n' (text before the first item is its own line). `___` marks are kept. Idempotent.
    """
    if not text:
        return ""
    return _normalize(text.replace("\r", "\n").split("\n"))


def _listed(line: str) -> bool:
    """A list item: '1. ', '2) ', '- ', '* ', '\u2022 ' (line non-empty, whitespace collapsed)."""
    c = line[0]  # the cheap test first; str.isdecimal() is exactly re's \d (Unicode Nd)
    return (c in "-*\u2022" or c.isdecimal()) and _LIST.match(line) is not None


def _normalize(lines: list[str]) -> str:
    """normalize() of text already split into lines."""
    items: list[str] = []
    listed = False
    for raw in lines:
        line = " ".join(raw.split())
        if not line:
            continue
        if _listed(line):
            listed = True
            items.append(line)
        elif items:
            items[-1] = f"{items[-1]} {line}"  # wrapped line: continue the current item
        else:
            items.append(line)
    if not listed:
        one = " ".join(items)
        parts = _split_numbered(one)
        return "\n".join(parts)
    out: list[str] = []
    for it in items:
        out.extend(_split_numbered(it) if _listed(it) else [it])
    return "\n".join(out)


def pick(
    sections: dict[str, str] | None, conclusion: str | None = None
) -> tuple[str | None, str | None]:
    """(findings, impression) of a report: the training pair, or None where missing.

    findings = the findings section. impression = the impression section, else a conclusion-type
    section (conclusion, summary: sources like CSV/FHIR may carry them unparsed), else the FHIR
    DiagnosticReport.conclusion. A combined findings_impression section fills neither: the pair
    cannot be separated reliably, and the paper drops reports without both sections.
    """
    sections = sections or {}
    findings = normalize(sections.get("findings")) or None
    impression = None
    for key in IMPRESSION_LIKE:
        impression = normalize(sections.get(key)) or None
        if impression:
            break
    if impression is None:
        impression = normalize(conclusion) or None
    return findings, impression


def merge(text: str | None, given: dict[str, str] | None) -> dict[str, str]:
    """Sections of a report that has both free text and explicit sections (CSV text column):
    parse(text), then explicit non-empty sections (normalized) win, keyed by canon(name)."""
    out = parse(text)
    for k, v in (given or {}).items():
        v = normalize(v)
        if v:
            out[canon(k)] = v
    return out


def word_count(text: str | None) -> int:
    """Whitespace tokens; None or '' -> 0."""
    return len(text.split()) if text else 0


if __name__ == "__main__":
    import json

    print(json.dumps(parse(sys.stdin.read()), indent=2))
