"""Raw source reports -> canonical rows (schemas/reports.json) and quarantine rows; the paper's rules.

Runs inside Spark tasks (and in the single-process baseline of bench/ingest.py): pure functions,
no I/O. Split fields are filled later by radgpt.ingest.cohort (they depend on other rows).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator

from radgpt.config import IngestCfg
from radgpt.ingest import sections
from radgpt.ingest.sources.base import Bad, Raw, Unit

# order matters: the first failed rule is the recorded reason
RULES = ("no_findings", "no_impression", "findings_too_short", "impression_too_short")
NO_PAIR = RULES[:2]  # a row failing these lacks a section: no (findings, impression) pair
# source statuses that announce a replaced report (lower-cased): FHIR DiagnosticReport.status
# amended | corrected | appended, HL7 v2 OBR-25 result status C (correction). Counted only: what
# makes a new version is changed content (content_hash), whatever the status says.
CORRECTION_STATUSES = ("amended", "corrected", "appended", "c")
ENDS = ("unreadable", "truncated")  # a Bad with these reasons stands for the rest of its unit


def exclusion(findings: str | None, impression: str | None, cfg: IngestCfg) -> str | None:
    """The paper's exclusion rules; None = eligible. Thresholds from config (paper: 10 and 2 words)."""
    if not findings:
        return "no_findings"
    if not impression:
        return "no_impression"
    if sections.word_count(findings) < cfg.min_findings_words:
        return "findings_too_short"
    if sections.word_count(impression) < cfg.min_impression_words:
        return "impression_too_short"
    return None


def pair_hash(findings: str | None, impression: str | None) -> str:
    """Exact-duplicate key: sha256 of the normalized (findings, impression) pair."""
    return hashlib.sha256(f"{findings or ''}\x1f{impression or ''}".encode()).hexdigest()


def content_hash(secs: dict[str, str], findings, impression, raw: Raw) -> str:
    """What makes a report version (schemas/reports.json content_sha256): sha256 of all its text,
    normalized (every section, the preamble too; Findings, Impression and a FHIR conclusion) and
    of its identity and exam (patient, study, accession, exam, exam code, exam time). Not the
    status (a status-only change is no new version), nor the record's bytes or place (a re-export
    with other quoting, headers or message ids is the same version)."""
    t = raw.exam_time.isoformat() if raw.exam_time else None
    ident = [raw.patient_id, raw.study_id, raw.accession, raw.exam, raw.exam_code, t]
    text = [sorted(secs.items()), findings, impression, sections.normalize(raw.conclusion)]
    return hashlib.sha256(json.dumps([text, ident], separators=(",", ":")).encode()).hexdigest()


def report_row(unit: Unit, raw: Raw, cfg: IngestCfg) -> dict:
    """One canonical row, without split/run fields (cohort and ingest fill those)."""
    if raw.sections is not None:  # explicit sections win over sections parsed from free text
        secs = sections.merge(raw.text, raw.sections)
    else:
        secs = sections.parse(raw.text or "")
    secs = {k: v for k, v in secs.items() if v}
    findings, impression = sections.pick(
        secs, conclusion=sections.normalize(raw.conclusion) if raw.conclusion else None
    )
    reason = exclusion(findings, impression, cfg)
    return {
        "report_id": f"{unit.format}:{raw.native_id}",
        "source": unit.format,
        "source_uri": raw.uri or unit.uri,
        "source_member": raw.member,
        "source_sha256": raw.sha256,
        "native_id": raw.native_id,
        "patient_id": raw.patient_id,
        "study_id": raw.study_id,
        "exam_time": raw.exam_time,
        "exam": raw.exam,
        "exam_code": raw.exam_code,
        "accession": raw.accession,
        "status": raw.status,
        "sections": secs or None,
        "findings": findings,
        "impression": impression,
        "findings_words": sections.word_count(findings),
        "impression_words": sections.word_count(impression),
        "pair_sha256": pair_hash(findings, impression),
        "content_sha256": content_hash(secs, findings, impression, raw),
        "eligible": reason is None,
        "exclusion_reason": reason,
        "official_split": raw.split,
    }


def bad_row(unit: Unit, bad: Bad) -> dict:
    return {
        "source": unit.format,
        "source_uri": bad.uri or unit.uri,
        "source_member": bad.member,
        "source_sha256": bad.sha256,
        "reason": bad.reason,
        "detail": (bad.detail or "")[:500],
        "size_bytes": bad.size,
    }


def parse_units(
    units: Iterable[Unit], cfg: IngestCfg, tally: Callable[[Unit, int, bool], None] | None = None
) -> Iterator[tuple[str, dict]]:
    """('report', row) or ('bad', row) for every report/problem in the units.

    A reader that raises (a bug, or an I/O error) quarantines the rest of its unit with reason
    `unreadable` rather than failing the night: nothing is silently dropped.
    tally(unit, items, ended), after each unit's last row: the items its reader gave (the
    `unreadable` row of a raise counts as one; an item whose row could not be made is that row),
    and whether the unit ended early (the reader raised, or its last item is a Bad for the rest of
    the unit: no member, or `unreadable`/`truncated`), for radgpt.ingest.counts.
    """
    from radgpt.ingest.sources import reader

    for unit in units:
        mod = reader(unit.format)
        items, held, ended = 0, False, False
        try:
            for item in mod.read(unit, cfg):
                items, held = items + 1, True  # held: a row for this item is not yet made
                if isinstance(item, Bad):
                    ended = item.member is None or item.reason in ENDS
                    out = "bad", bad_row(unit, item)
                else:
                    ended, out = False, ("report", report_row(unit, item, cfg))
                held = False
                yield out
        except Exception as e:  # noqa: BLE001 - quarantine, never drop
            items, ended = items + (not held), True  # a held item's row is this one
            member = unit.member or (f"{unit.start}:{unit.stop}" if unit.stop >= 0 else None)
            yield "bad", bad_row(unit, Bad(member, "unreadable", f"{type(e).__name__}: {e}"[:300]))
        if tally is not None:
            tally(unit, items, ended)
