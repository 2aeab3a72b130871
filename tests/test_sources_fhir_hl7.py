"""Source readers FHIR R4 DiagnosticReport (NDJSON, Bundle) and HL7 v2 ORU^R01 on tmp fixtures.

.venv/bin/pytest tests/test_sources_fhir_hl7.py -q
"""

from __future__ import annotations

import datetime as dt
import json

from fixtures_sources import diagnostic_report, hl7_message

from radgpt.config import IngestCfg
from radgpt.ingest import sections
from radgpt.ingest.sources import detect, fhir, hl7
from radgpt.ingest.sources.base import Bad, Raw
from radgpt.sample.fhir import ACCESSION_SYSTEM, collection, narrative, presented_form
from radgpt.sample.hl7 import hl7_batch

REPORT = "FINDINGS: The lungs are clear. No effusion.\nIMPRESSION: No acute disease."
HTML = "<html><body><p><b>FINDINGS:</b> Heart size normal &amp; lungs clear.</p><p>IMPRESSION: Normal.</p></body></html>"
DIV = "<p>FINDINGS: Stable nodule.</p><p>IMPRESSION: Unchanged.</p>"  # XHTML of text.div


def read_all(mod, path, cfg):
    us = list(mod.units(path, cfg))
    return us, [r for u in us for r in mod.read(u, cfg)]


def pair(r: Raw):
    return sections.pick(sections.parse(r.text), r.conclusion)


# ---- FHIR ------------------------------------------------------------------------------------------


def ndjson_lines() -> list[str]:
    plain = diagnostic_report(
        "plain",
        presentedForm=presented_form(REPORT, "text/plain; charset=utf-8"),
        conclusion="Conclusion is only a fallback.",
        imagingStudy=[{"reference": "ImagingStudy/is1"}],
    )
    html = diagnostic_report("html", presentedForm=presented_form(HTML, "text/html"))
    div = diagnostic_report("div", text=narrative(DIV), effectiveDateTime="2021-05-06")
    concl = diagnostic_report(
        None,
        conclusion="No acute cardiopulmonary process.",
        text=narrative("<p>FINDINGS: Clear lungs, normal heart.</p>"),
    )
    latin = diagnostic_report(
        "latin", presentedForm=presented_form("Caf\xe9".encode("latin-1"), "text/plain")
    )
    return [
        json.dumps(plain),
        json.dumps(html),
        "",  # a blank line is not a resource
        json.dumps(div),
        json.dumps(concl),
        json.dumps({"resourceType": "Patient", "id": "p42"}),
        '{"resourceType": "DiagnosticReport", "id": "trunc',  # bad JSON
        json.dumps({"resourceType": "DiagnosticReport", "id": "x", "status": "final"}),  # no code
        json.dumps(latin),
        json.dumps(diagnostic_report("empty")),  # no text at all
    ]


def test_fhir_ndjson_all_text_sources_and_bad_records(tmp_path):
    p = tmp_path / "DiagnosticReport.ndjson"
    p.write_text("\n".join(ndjson_lines()) + "\n")
    cfg = IngestCfg(csv_rows_per_unit=4)
    assert detect(p) == "fhir"
    us, rs = read_all(fhir, p, cfg)
    assert [(u.start, u.stop) for u in us] == [(0, 4), (4, 8), (8, 10)]
    assert len(rs) == 9  # 10 lines, one blank
    by = {r.member: r for r in rs}
    assert [getattr(by[m], "reason", "ok") for m in "01345678"] == ["ok"] * 4 + [
        "skipped_resource", "bad_json", "invalid_fhir", "bad_encoding"
    ]  # fmt: skip
    assert by["9"].reason == "no_text"
    plain = by["0"]
    assert plain.native_id == "plain" and plain.text == REPORT
    assert pair(plain) == ("The lungs are clear. No effusion.", "No acute disease.")
    assert plain.patient_id == "p42" and plain.study_id == "ImagingStudy/is1"
    assert plain.exam == "XR Chest 2V" and plain.status == "final"
    assert plain.exam_time == dt.datetime(2021, 3, 4, 15, 20, 30, tzinfo=dt.UTC)
    assert plain.meta["identifier"] == f"{ACCESSION_SYSTEM}|acc-plain"
    assert plain.accession == f"{ACCESSION_SYSTEM}|acc-plain"  # the identifier typed ACSN
    assert plain.exam_code == "http://loinc.org|36643-5"
    assert plain.sha256 != by["1"].sha256
    assert pair(by["1"]) == ("Heart size normal & lungs clear.", "Normal.")  # html stripped
    assert pair(by["3"]) == ("Stable nodule.", "Unchanged.")  # text.div fallback
    assert by["3"].exam_time == dt.datetime(2021, 5, 6, tzinfo=dt.UTC)
    concl = by["4"]  # no id: identifier is the native id; conclusion fills the impression
    assert concl.native_id == f"{ACCESSION_SYSTEM}|acc-None"
    assert pair(concl) == ("Clear lungs, normal heart.", "No acute cardiopulmonary process.")
    assert "code" in by["7"].detail and by["5"].detail == "resourceType=Patient"


def test_fhir_bundle_and_single_resource(tmp_path):
    b1 = diagnostic_report("b1", presentedForm=presented_form(REPORT, "text/plain"))
    patient = {"resourceType": "Patient", "id": "p42"}
    b3 = diagnostic_report("b3", issued="yesterday", conclusion="x")
    bundle = collection("b", [b1, patient, b3], "2021-03-04T18:00:00Z")
    p = tmp_path / "bundle.json"
    p.write_text(json.dumps(bundle, indent=1))
    assert detect(p) == "fhir"
    us, rs = read_all(fhir, p, IngestCfg())
    assert len(us) == 1 and [r.member for r in rs] == ["0", "1", "2"]
    assert (
        isinstance(rs[0], Raw) and rs[0].native_id == "b1" and pair(rs[0])[1] == "No acute disease."
    )
    assert (rs[1].reason, rs[2].reason) == ("skipped_resource", "invalid_fhir")
    one = tmp_path / "one.json"
    one.write_text(json.dumps(b1))
    _, (r,) = read_all(fhir, one, IngestCfg())
    assert r.member == "0" and r.native_id == "b1" and r.sha256 != rs[0].sha256
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle", "entry": [')
    _, (b,) = read_all(fhir, bad, IngestCfg())
    assert isinstance(b, Bad) and b.reason == "bad_json"
    # the cap is per entry: a Bundle file over it is streamed, each entry over it is too_large
    _, big = read_all(fhir, p, IngestCfg(max_member_bytes=100))
    assert [(b.member, b.reason) for b in big] == [(str(i), "too_large") for i in range(3)]
    _, (one_big,) = read_all(fhir, one, IngestCfg(max_member_bytes=100))  # a lone resource
    assert one_big.reason == "too_large"


# ---- HL7 v2 ----------------------------------------------------------------------------------------

FT = r"FINDINGS:\.br\The lungs are clear.\.br\Heart size normal \T\ stable.\.br\IMPRESSION:\.br\No acute disease."


def test_hl7_two_messages_cr_separators(tmp_path):
    m1 = hl7_message("CTL1", "FIL1", [("FT", FT)])
    m2 = hl7_message(
        "CTL2", "FIL2^RIS", [("TX", "FINDINGS: Left basilar opacity."), ("TX", "IMPRESSION: Pneumonia~Follow up.")],
        obr7="202401021030",
    )  # fmt: skip
    m2.insert(4, "OBX|1|NM|8867-4^HR||72|bpm|||||F")  # after OBR; numeric OBX: not report text
    p = tmp_path / "results.hl7"
    p.write_bytes(("\r".join(m1 + m2) + "\r").encode())
    assert detect(p) == "hl7"
    us, rs = read_all(hl7, p, IngestCfg())
    assert len(us) == 1 and [r.member for r in rs] == ["0", "1"]
    r1, r2 = rs
    assert r1.native_id == r1.study_id == r1.accession == "FIL1" and r1.patient_id == "MRN123"
    assert r1.exam == "XR CHEST 2 VIEWS" and r1.status == "F"
    assert r1.exam_code == "http://www.ama-assn.org/go/cpt|71020"  # OBR-4 coded CPT
    assert r1.exam_time == dt.datetime(2024, 1, 2, 15, 30, tzinfo=dt.UTC)
    assert r1.text.splitlines()[2] == "Heart size normal & stable."
    assert pair(r1) == ("The lungs are clear. Heart size normal & stable.", "No acute disease.")
    assert r2.native_id == "FIL2" and r2.exam_time == dt.datetime(2024, 1, 2, 10, 30, tzinfo=dt.UTC)
    assert pair(r2) == ("Left basilar opacity.", "Pneumonia Follow up.")
    assert r1.sha256 != r2.sha256


def test_accession_and_exam_code_as_tokens():
    """exam_code and accession: system|value when the source names the system, else what it has."""
    acsn = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
    order = {"type": "ServiceRequest", "identifier": {"type": acsn, "value": "A9"}}
    res = diagnostic_report("r9", identifier=[], basedOn=[order], conclusion="x")
    res["code"] = {"coding": [{"code": "local-1"}, {"system": "urn:ris", "code": "XR2"}]}
    r = fhir.resource_to_raw("0", res, b"{}")
    # the accession from basedOn; the first coding with a system
    assert (r.accession, r.exam_code) == ("A9", "urn:ris|XR2")
    r = fhir.resource_to_raw("0", diagnostic_report("r8", identifier=[], conclusion="x"), b"{}")
    assert r.accession is None
    msg = hl7_message("C1", "F1^RIS^1.2.3^ISO", [("TX", "IMPRESSION: Normal.")])
    msg[3] = msg[3].replace("71020^XR CHEST 2 VIEWS^CPT", "36643-5^XR Chest 2V^LN")
    r = hl7.parse_message("0", "\r".join(msg).encode())
    assert (r.accession, r.exam_code) == ("urn:oid:1.2.3|F1", "http://loinc.org|36643-5")
    msg[3] = msg[3].replace("36643-5^XR Chest 2V^LN", "XR2^XR Chest 2V^99RIS")
    r = hl7.parse_message("0", "\r".join(msg).encode())
    assert (r.accession, r.exam_code, r.exam) == ("urn:oid:1.2.3|F1", None, "XR Chest 2V")


def test_hl7_newline_separators_and_bad_messages(tmp_path):
    good = hl7_message("C1", "F1", [("ST", "IMPRESSION: Normal.")])
    no_obr = [s for s in hl7_message("C2", "F2", [("TX", "x")]) if not s.startswith("OBR")]
    no_text = hl7_message("C3", "F3", [])
    latin = hl7_message("C4", "F4", [("TX", "Caf\xe9")])
    crlf = hl7_message("C5", "F5", [("TX", "FINDINGS: ok.")])
    data = (
        b"garbage before any MSH\n"
        + "\n".join(good + no_obr + no_text).encode()
        + b"\n"
        + "\n".join(latin).encode("latin-1")
        + b"\n"
        + "\r\n".join(crlf).encode()
        + b"\r\n"
    )
    p = tmp_path / "batch.txt"  # no .hl7 suffix: detected by its MSH| start? no: garbage first
    p.write_bytes(data)
    (tmp_path / "b.hl7").write_bytes(data)
    assert detect(tmp_path / "b.hl7") == "hl7"
    _, rs = read_all(hl7, tmp_path / "b.hl7", IngestCfg())
    assert [(r.member, getattr(r, "reason", "ok")) for r in rs] == [
        ("0", "bad_hl7"), ("1", "ok"), ("2", "bad_hl7"), ("3", "no_text"), ("4", "bad_encoding"), ("5", "ok"),
    ]  # fmt: skip
    assert rs[1].native_id == "F1" and rs[1].text == "IMPRESSION: Normal."
    assert rs[5].native_id == "F5" and rs[5].text == "FINDINGS: ok."
    assert "Caf" not in rs[4].detail
    # an ISO-8859-1 message that says so in MSH-18 decodes
    lat = list(latin)
    lat[0] += "|||||||8859/1"
    (tmp_path / "l.hl7").write_bytes("\r".join(lat).encode("latin-1"))
    _, (r,) = read_all(hl7, tmp_path / "l.hl7", IngestCfg())
    assert r.text == "Caf\xe9"
    # detection by content: a file starting with MSH| without the .hl7 suffix
    (tmp_path / "msg.txt").write_bytes("\r".join(good).encode())
    assert detect(tmp_path / "msg.txt") == "hl7"


def test_hl7_cr_segments_newline_messages_headerless_message_is_quarantined(tmp_path):
    """\\r between segments, \\n between messages: a message missing its MSH is its own bad
    message, not glued onto the report before it."""
    a = hl7_message(
        "A", "FA", [("TX", "FINDINGS: Clear lungs."), ("TX", "IMPRESSION: Normal chest.")]
    )
    headless = hl7_message("B", "FB", [("TX", "FINDINGS: Right effusion.")])[1:]  # no MSH
    c = hl7_message("C", "FC", [("TX", "IMPRESSION: No acute disease.")])
    p = tmp_path / "batch.hl7"
    p.write_bytes(hl7_batch([a, headless, c]))  # the sample's layout
    _, rs = read_all(hl7, p, IngestCfg())
    assert [(r.member, getattr(r, "reason", "ok")) for r in rs] == [
        ("0", "ok"), ("1", "bad_hl7"), ("2", "ok"),
    ]  # fmt: skip
    assert "effusion" not in rs[0].text
