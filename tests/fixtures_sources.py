"""Small source fixtures for the reader tests, rendered by the sample's writers (radgpt.sample.<fmt>).

A well-formed record of a format comes from the sample's code (one implementation per format:
mimic_report, openi_document, csv_text, diagnostic_report / presented_form, the HL7 segments);
the tests build their edge cases (bad bytes, odd members, missing segments) around them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from radgpt.sample import fhir, hl7, mimic, openi
from radgpt.sample.text import Case

MIMIC_REPORT = mimic.mimic_report(
    Case(
        findings="The lungs are clear without focal consolidation, effusion or pneumothorax. "
        "The cardiomediastinal silhouette is within normal limits.",
        impression="No acute cardiopulmonary process.",
        indication="___M with cough  // pneumonia?",
        comparison="___",
        technique="Chest PA and lateral.",
        exam="CHEST (PA AND LAT)",
        portable=False,
        sex="M",
    )
)


def write_mimic_dir(root: Path, reports: dict[tuple[int, int], bytes]) -> Path:
    """{(subject, study): report bytes} -> root/files/pNN/p<subject>/s<study>.txt."""
    return mimic.write_reports(root, ((su, st, data) for (su, st), data in reports.items()))


def write_mimic_zip(
    path: Path, reports: dict[tuple[int, int], bytes], extra: dict | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for (subject, study), data in reports.items():
            z.writestr(mimic.report_path(subject, study), data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def openi_xml(n: int, sections: dict[str, str], major=(), minor=()) -> bytes:
    """An ecgen-radiology/<n>.xml document like NLM's NLMCXR_reports.tgz members (one image)."""
    return openi.openi_document(
        n, sections, major, minor, [(f"CXR{n}_1_IM-0001-3001", "PA")]
    ).encode()


def write_tgz(path: Path, members: dict[str, bytes]) -> Path:
    path.write_bytes(openi.tgz(members.items()))
    return path


def diagnostic_report(rid: str | None = "r1", **kw) -> dict:
    """A valid R4 DiagnosticReport of Patient/p42 without text; kw adds/overrides fields."""
    when, issued = "2021-03-04T10:20:30-05:00", "2021-03-04T18:00:00Z"
    return {**fhir.diagnostic_report(rid, "p42", f"acc-{rid}", when, issued), **kw}


def hl7_message(
    ctl: str, filler: str, text_obx: list[tuple[str, str]], obr7: str = "20240102103000-0500"
) -> list[str]:
    """Segments (MSH, PID, ORC, OBR, OBX...) of an ORU^R01 result; text_obx = [(value type, OBX-5)]."""
    placer = f"PLC{ctl}"
    segs = [
        hl7.msh(ctl, "20240102120000"),
        hl7.pid("MRN123", "19700101", "F"),
        hl7.orc(placer, filler),
        hl7.obr(placer, filler, obr7, exam="71020^XR CHEST 2 VIEWS^CPT"),
    ]
    segs += [hl7.obx(j, value, value_type=vt) for j, (vt, value) in enumerate(text_obx, 1)]
    return segs
