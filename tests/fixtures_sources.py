"""Writers of small, realistic source fixtures (public formats) into a tmp dir for the reader tests."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from pathlib import Path

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___M with cough  // pneumonia?

 COMPARISON:  ___

 FINDINGS:

 The lungs are clear without focal consolidation, effusion or
 pneumothorax.  The cardiomediastinal silhouette is within normal limits.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def mimic_rel(subject: int, study: int) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt"


def mimic_split_csv(rows: list[tuple[str, int, int, str]]) -> str:
    """dicom_id,study_id,subject_id,split rows (several per study in the real file)."""
    lines = ["dicom_id,study_id,subject_id,split"]
    lines += [f"{d},{st},{su},{sp}" for d, st, su, sp in rows]
    return "\n".join(lines) + "\n"


def write_mimic_dir(root: Path, reports: dict[tuple[int, int], bytes]) -> Path:
    for (subject, study), data in reports.items():
        p = root / mimic_rel(subject, study)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_mimic_zip(
    path: Path, reports: dict[tuple[int, int], bytes], extra: dict | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for (subject, study), data in reports.items():
            z.writestr(mimic_rel(subject, study), data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def openi_xml(n: int, sections: dict[str, str], major=(), minor=()) -> bytes:
    """An ecgen-radiology/<n>.xml document like NLM's NLMCXR_reports.tgz members."""
    abstract = "".join(
        f'<AbstractText Label="{k}">{v}</AbstractText>\n' for k, v in sections.items()
    )
    mesh = "".join(f"<major>{t}</major>" for t in major) + "".join(
        f"<minor>{t}</minor>" for t in minor
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{n}"/>
   <pmcId id="{n}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{n}"/>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
{abstract}         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>{mesh}</MeSH>
   <parentImage id="CXR{n}_1_IM-0001-3001"><figureId>F1</figureId></parentImage>
</eCitation>
""".encode()


def write_tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def diagnostic_report(rid: str | None = "r1", **kw) -> dict:
    """A minimal valid R4 DiagnosticReport; kw adds/overrides fields."""
    r = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2V"}]
        },
        "subject": {"reference": "Patient/p42"},
        "effectiveDateTime": "2021-03-04T10:20:30-05:00",
        "issued": "2021-03-04T18:00:00Z",
        "identifier": [{"system": "urn:oid:1.2.3", "value": f"acc-{rid}"}],
    }
    if rid is not None:
        r["id"] = rid
    r.update(kw)
    return r


def hl7_message(
    ctl: str,
    filler: str,
    text_obx: list[tuple[str, str]],
    pid: str = "MRN123^^^HOSP^MR",
    obr7: str = "20240102103000-0500",
) -> list[str]:
    """Segments of an ORU^R01 radiology result; text_obx = [(value type, OBX-5)]."""
    segs = [
        f"MSH|^~\\&|RIS|HOSP|EHR|HOSP|20240102120000||ORU^R01|{ctl}|P|2.5",
        f"PID|1||{pid}||DOE^JANE||19700101|F",
        f"OBR|1|PLC{ctl}|{filler}|71020^XR CHEST 2 VIEWS^CPT|||{obr7}||||||||||||||||||F",
    ]
    for i, (vt, val) in enumerate(text_obx, 1):
        segs.append(f"OBX|{i}|{vt}|18782-3^RADIOLOGY STUDY OBSERVATION^LN||{val}||||||F")
    return segs
