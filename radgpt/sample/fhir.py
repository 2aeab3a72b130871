"""FHIR R4 in the sample: DiagnosticReports as Bulk Data NDJSON and in a collection Bundle.

    diagnostic_report(rid, pid, accession, effective, issued)   # the resource, without its text
    with_text(res, case, form)      # the report as presentedForm (plain, html), text.div or conclusion
    write_fhir(dir, n, seed, bad)   # fhir/diagnosticreports.ndjson, fhir/bundle.json

The reader is radgpt.ingest.sources.fhir.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import uuid
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import escape

from radgpt.sample.base import draw_time, report_text, rng, stats
from radgpt.sample.text import Case, draw_case, draw_cases

ACCESSION_SYSTEM = "http://hospital.example.org/fhir/sid/accession"
MRN_SYSTEM = "http://hospital.example.org/fhir/sid/mrn"
LOINC_CXR = {"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2V"}
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
ACSN = {"coding": [{"system": V2 + "0203", "code": "ACSN"}]}  # identifier type: accession
RAD = {"coding": [{"system": V2 + "0074", "code": "RAD", "display": "Radiology"}]}
BASE_URL = "https://hospital.example.org/fhir"
XHTML = "http://www.w3.org/1999/xhtml"
FORMS = ("plain", "html", "div", "conclusion")


def _html(c: Case) -> str:
    """Report as XHTML paragraphs: "<p><b>HEADER:</b> text</p>" (numbered items on <br/>)."""
    secs = [("EXAMINATION", c.exam), ("INDICATION", c.indication), ("TECHNIQUE", c.technique)]
    secs += [("COMPARISON", c.comparison), ("FINDINGS", c.findings), ("IMPRESSION", c.impression)]
    return "".join(
        f"<p><b>{h}:</b> {escape(t).replace(chr(10), '<br/>')}</p>"
        for h, t in secs
        if t is not None
    )


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def diagnostic_report(
    rid: str | None, pid: str, accession: str, effective: str, issued: str
) -> dict:
    """A final chest X-ray DiagnosticReport of Patient/<pid> (no id when rid is None), no text."""
    res: dict = {"resourceType": "DiagnosticReport"}
    if rid is not None:
        res["id"] = rid
    res |= {
        "identifier": [{"type": ACSN, "system": ACCESSION_SYSTEM, "value": accession}],
        "status": "final",
        "category": [RAD],
        "code": {"coding": [LOINC_CXR], "text": "XR Chest 2V"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": effective,
        "issued": issued,
    }
    return res


def narrative(xhtml: str) -> dict:
    """Resource.text: generated XHTML (the report when there is no presentedForm)."""
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{xhtml}</div>'}


def presented_form(body: str | bytes, content_type: str) -> list[dict]:
    """DiagnosticReport.presentedForm: the report as one base64 attachment (str: UTF-8)."""
    data = base64.b64encode(body.encode() if isinstance(body, str) else body).decode()
    return [{"contentType": content_type, "language": "en-US", "data": data}]


def with_text(res: dict, c: Case, form: str) -> dict:
    """The case's report on `res`; form: plain | html (presentedForm), div (text.div only),
    conclusion (findings-only text, the impression in DiagnosticReport.conclusion)."""
    if form == "div":
        res["text"] = narrative(_html(c))
        return res
    if form == "html":
        body, ctype = f"<html><body>{_html(c)}</body></html>", "text/html"
    else:
        body, ctype = report_text(c, impression=form == "plain"), "text/plain"
    res["presentedForm"] = presented_form(body, ctype)
    if form == "conclusion" and c.impression is not None:
        res["conclusion"] = c.impression
    return res


def fhir_report(c: Case, r: random.Random, pid: str, form: str) -> dict:
    """A DiagnosticReport of the case: exam time, accession and id drawn from `r`."""
    when = draw_time(r)
    acc = f"ACC{r.randint(10_000_000, 99_999_999)}"
    rid = str(uuid.UUID(int=r.getrandbits(128), version=4))
    issued = when + dt.timedelta(minutes=r.randint(20, 600))
    return with_text(diagnostic_report(rid, pid, acc, _iso(when), _iso(issued)), c, form)


def collection(bid: str, resources: list[dict], timestamp: str) -> dict:
    """A collection Bundle of `resources` (each with an id), fullUrl under BASE_URL."""
    entries = [
        {"fullUrl": f"{BASE_URL}/{x['resourceType']}/{x['id']}", "resource": x} for x in resources
    ]
    return {
        "resourceType": "Bundle",
        "id": bid,
        "type": "collection",
        "timestamp": timestamp,
        "entry": entries,
    }


def write_fhir(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = rng(seed, "fhir")
    cases = draw_cases(r, n, mark=None)  # a live system: synthetic values, no de-id marks
    pids = [f"pat-{r.randint(100_000, 999_999)}" for _ in range(max(1, n // 3))]
    forms = r.choices(FORMS, (40, 20, 20, 20), k=n)
    lines = [
        json.dumps(fhir_report(c, r, r.choice(pids), f), separators=(",", ":"))
        for c, f in zip(cases, forms, strict=True)
    ]
    if bad:  # a truncated JSON line, and a resource with an unknown status and no code
        broken = json.dumps(fhir_report(draw_case(r, None), r, pids[0], "plain"))
        invalid = fhir_report(draw_case(r, None), r, pids[0], "plain")
        invalid["status"] = "bogus"
        del invalid["code"]
        lines.insert(2 * n // 3, json.dumps(invalid, separators=(",", ":")))
        lines.insert(n // 3, broken[: len(broken) // 2])
    d.mkdir(parents=True, exist_ok=True)
    (d / "diagnosticreports.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Bundle: one Patient with a handful of clean reports
    pid, m = pids[0], max(1, n // 10)
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": MRN_SYSTEM, "value": f"MRN{r.randint(1_000_000, 9_999_999)}"}],
        "name": [{"family": "Synthetic", "given": ["Sample"]}],
        "gender": "female",
        "birthDate": f"{r.randint(1930, 1990)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    }
    bcases = draw_cases(r, m, mark=None, defects=False)
    bforms = r.choices(FORMS, k=m)
    reports = [fhir_report(c, r, pid, f) for c, f in zip(bcases, bforms, strict=True)]
    bundle = collection(f"sample-{seed}", [patient, *reports], max(x["issued"] for x in reports))
    (d / "bundle.json").write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    st = stats(cases)
    return {
        **st,
        "reports": n + m,
        "ndjson_reports": n,
        "bundle_reports": m,
        "forms": dict(sorted(Counter(forms + bforms).items())),
        "bad": {"bad_json": int(bad), "invalid_fhir": int(bad)},
    }
