"""`radgpt sample`: byte-identical per seed, every format parses with its real parser (python-hl7,
fhir.resources, xml.etree, csv, gzip), MANIFEST counts match the files, the bad inputs really are
bad, and each abnormal finding named in Findings is named (with its side) in the Impression.

    .venv/bin/pytest tests/test_sample.py -q
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import random
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import hl7
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydantic import ValidationError

from radgpt.sample.csvx import CSV_COLUMNS
from radgpt.sample.text import draw_cases
from radgpt.sample.write import write_sample

N = 40  # reports per format: 1 defect per cohort rule and 1 duplicate at this size

# test-side vocabulary (independent of the generator's phrase tables): kind -> regex
KIND_RE = {
    "cardiomegaly": r"cardiomegaly|enlarge",
    "effusion": r"effusion",
    "pneumothorax": r"pneumothorax",
    "consolidation": r"consolidation|pneumonia|airspace opacity",
    "atelectasis": r"atelectasis",
    "edema": r"pulmonary edema",
    "nodule": r"nodul",
    "emphysema": r"emphysema|hyperinflat|hyperexpan",
    "fracture": r"fracture",
    "ett": r"endotracheal tube",
    "cvc": r"central (venous catheter|line)",
    "pacemaker": r"pacemaker",
    "ng_tube": r"nasogastric|enteric tube",
    "degenerative": r"degenerative",
    "hernia": r"hiatal hernia",
    "granuloma": r"granuloma",
    "sternotomy": r"sternotomy",
}
MESH_RE = {
    "Cardiomegaly": KIND_RE["cardiomegaly"],
    "Pleural Effusion": KIND_RE["effusion"],
    "Pneumothorax": KIND_RE["pneumothorax"],
    "Airspace Disease": KIND_RE["consolidation"],
    "Pulmonary Atelectasis": KIND_RE["atelectasis"],
    "Pulmonary Edema": KIND_RE["edema"],
    "Nodule": KIND_RE["nodule"],
    "Emphysema": KIND_RE["emphysema"],
    "Lung": KIND_RE["emphysema"],
    "Fractures, Bone": KIND_RE["fracture"],
    "Tube, Inserted": r"endotracheal tube|nasogastric",
    "Catheters, Indwelling": KIND_RE["cvc"],
    "Pacemaker, Artificial": KIND_RE["pacemaker"],
    "Thoracic Vertebrae": KIND_RE["degenerative"],
    "Hernia, Hiatal": KIND_RE["hernia"],
    "Calcified Granuloma": KIND_RE["granuloma"],
    "Sternotomy": KIND_RE["sternotomy"],
}
NORMAL_IMPRESSION = r"no (evidence of )?acute|normal chest|negative|unremarkable|^normal"
SIDES = ("left", "right", "bilateral")


def words(s: str | None) -> int:
    return len((s or "").split())


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample") / "sample"
    return out, write_sample(out, n=N, seed=3)


def test_deterministic_per_seed(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_sample(tmp_path / name, n=15, seed=seed)
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b and len(a) > 15
    assert c["csv/reports.csv"] != a["csv/reports.csv"]
    assert c["hl7/oru.hl7"] != a["hl7/oru.hl7"]


def test_cli_default_out_and_no_bad(tmp_path):
    from radgpt.cli import main

    assert main(["sample", "--set", f"paths.root={tmp_path}", "--n", "200", "--no-bad"]) == 0
    m = json.loads((tmp_path / "sample" / "MANIFEST.json").read_text())
    assert m["n"] == 200 and m["bad_inputs"] is False and m["totals"]["bad"] == 0
    assert m["formats"]["hl7"]["messages"] == 200
    assert len(list((tmp_path / "sample" / "mimic" / "files").rglob("*.txt"))) == 200
    # rerunning replaces the earlier sample (fewer reports, no stale files)
    assert main(["sample", "--out", str(tmp_path / "sample"), "--n", "10"]) == 0
    assert len(list((tmp_path / "sample" / "mimic" / "files").rglob("*.txt"))) == 11


def test_refuses_foreign_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing"):
        write_sample(tmp_path, n=5)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="n must be"):
        write_sample(tmp_path / "x", n=0)


def test_manifest_files_match_disk(sample):
    out, m = sample
    assert m["generator"] == "radgpt.sample" and m["seed"] == 3 and m["generator_version"]
    assert json.loads((out / "MANIFEST.json").read_text()) == json.loads(json.dumps(m))
    for rel, info in m["files"].items():
        if rel == "mimic/files/":
            assert info["count"] == len(list((out / rel).rglob("*.txt")))
        else:
            assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == info["sha256"]
    assert m["totals"]["reports"] == sum(f["reports"] for f in m["formats"].values())


def test_mimic(sample):
    out, m = sample
    fm = m["formats"]["mimic"]
    paths = sorted((out / "mimic" / "files").rglob("*.txt"))
    assert len(paths) == N + 1
    texts, bad = {}, []
    for p in paths:
        subj, study = p.parent.name, p.stem
        assert re.fullmatch(r"p1\d{7}", subj) and p.parent.parent.name == subj[:3]
        assert re.fullmatch(r"s5\d{7}", study)
        try:
            texts[p] = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            bad.append(p)
    assert len(bad) == fm["bad"]["bad_encoding"] == 1
    assert "°" in bad[0].read_bytes().decode("latin-1")
    assert len(texts) == fm["reports"] == N
    assert all(t.lstrip().startswith("FINAL REPORT") for t in texts.values())
    assert any("___" in t for t in texts.values())
    assert max(len(ln) for t in texts.values() for ln in t.splitlines()) <= 80  # wrapped
    both = sum("FINDINGS AND IMPRESSION:" in t for t in texts.values())
    assert both == fm["combined_findings_impression"] >= 1
    no_f = sum("FINDINGS" not in t for t in texts.values())
    no_i = sum(not re.search(r"IMPRESSION:|CONCLUSION:", t) for t in texts.values())
    assert no_f + both == fm["ineligible"]["no_findings"]
    assert no_i == fm["ineligible"]["no_impression"]
    assert sum(bool(re.search(r"^ FINDINGS: $", t, re.M)) for t in texts.values()) > 0  # alone
    assert sum(bool(re.search(r"^ FINDINGS:  \S", t, re.M)) for t in texts.values()) > 0  # inline
    # the split file: gzip csv, 1-3 dicoms per study, integer ids, one split per subject
    with gzip.open(out / "mimic" / "mimic-cxr-2.0.0-split.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["dicom_id", "study_id", "subject_id", "split"]
    assert len(rows) == fm["split_rows"]
    per_study: dict[str, set] = {}
    for r in rows:
        assert r["split"] in ("train", "validate", "test") and r["study_id"].isdigit()
        per_study.setdefault(r["study_id"], set()).add((r["subject_id"], r["split"], r["dicom_id"]))
    assert set(per_study) == {p.stem[1:] for p in paths}
    for p in paths:
        rs = per_study[p.stem[1:]]
        assert 1 <= len(rs) <= 3 and {x[0] for x in rs} == {p.parent.name[1:]}


def test_openi(sample):
    out, m = sample
    fm = m["formats"]["openi"]
    with tarfile.open(out / "openi" / "NLMCXR_reports.tgz") as tar:
        members = [ti for ti in tar.getmembers() if ti.isfile()]
        assert {ti.mtime for ti in tar.getmembers()} == {1372636800}
        data = {ti.name: tar.extractfile(ti).read() for ti in members}
    assert len(data) == fm["members"] == N + 1
    good, bad = {}, []
    for name, b in data.items():
        assert re.fullmatch(r"ecgen-radiology/\d+\.xml", name)
        try:
            good[name] = ET.fromstring(b)
        except ET.ParseError:
            bad.append(name)
    assert len(bad) == fm["bad"]["bad_xml"] == 1 and len(good) == fm["reports"]
    empty = {"FINDINGS": 0, "IMPRESSION": 0}
    for name, root in good.items():
        num = name.split("/")[1][:-4]
        assert root.tag == "eCitation" and root.find("uId").get("id") == f"CXR{num}"
        assert root.find("pmcId").get("id") == num
        texts = root.findall("MedlineCitation/Article/Abstract/AbstractText")
        assert [t.get("Label") for t in texts] == [
            "COMPARISON",
            "INDICATION",
            "FINDINGS",
            "IMPRESSION",
        ]
        for t in texts:
            if t.get("Label") in empty and not (t.text or "").strip():
                empty[t.get("Label")] += 1
        assert root.find("MeSH/major").text
        assert root.find("parentImage").get("id").startswith(f"CXR{num}_1_IM-")
    assert empty["FINDINGS"] == fm["ineligible"]["no_findings"]
    assert empty["IMPRESSION"] == fm["ineligible"]["no_impression"]


def test_csv_counts(sample):
    out, m = sample
    fm = m["formats"]["csv"]
    with open(out / "csv" / "reports.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == fm["reports"] == N
    assert len({r["uid"] for r in rows}) == N
    assert any("XXXX" in " ".join(r.values()) for r in rows)
    assert not any("___" in " ".join(r.values()) for r in rows)
    has = [r for r in rows if r["findings"] and r["impression"]]
    ine = fm["ineligible"]
    assert sum(not r["findings"] for r in rows) == ine["no_findings"] == 1
    assert sum(bool(r["findings"]) and not r["impression"] for r in rows) == ine["no_impression"]
    assert sum(words(r["findings"]) < 10 for r in has) == ine["findings_too_short"]
    ok = [r for r in has if words(r["findings"]) >= 10]
    assert sum(words(r["impression"]) < 2 for r in ok) == ine["impression_too_short"]
    pairs = [(r["findings"], r["impression"]) for r in ok if words(r["impression"]) >= 2]
    assert len(pairs) - len(set(pairs)) == fm["duplicates"] >= fm["duplicates_injected"] == 1
    assert sum(r["MeSH"] == "normal" for r in rows) == fm["normal"]


def test_fhir(sample):
    out, m = sample
    fm = m["formats"]["fhir"]
    lines = (out / "fhir" / "diagnosticreports.ndjson").read_text().splitlines()
    assert len(lines) == N + 2
    valid, bad_json, invalid = [], 0, []
    for ln in lines:
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError:
            bad_json += 1
            continue
        try:
            valid.append((DiagnosticReport.model_validate(obj), obj))
        except ValidationError:
            invalid.append(obj)
    assert bad_json == fm["bad"]["bad_json"] == 1
    assert len(invalid) == fm["bad"]["invalid_fhir"] == 1 and invalid[0]["status"] == "bogus"
    assert len(valid) == fm["ndjson_reports"] == N
    kinds = set()
    for r, obj in valid:
        assert r.status == "final" and r.code.coding[0].code == "36643-5"
        assert r.code.coding[0].system == "http://loinc.org"
        assert r.subject.reference.startswith("Patient/") and r.effectiveDateTime and r.issued
        assert r.identifier[0].system.endswith("/accession") and r.identifier[0].value
        if r.presentedForm:
            att = r.presentedForm[0]
            text = base64.b64decode(obj["presentedForm"][0]["data"], validate=True).decode()
            plain = "conclusion" if r.conclusion else "plain"
            kinds.add(plain if att.contentType == "text/plain" else "html")
            if r.conclusion:
                assert "IMPRESSION" not in text
            assert ("<p>" in text) == (att.contentType == "text/html")
        else:
            assert r.text.div.startswith("<div") and re.search("FINDINGS|IMPRESSION", r.text.div)
            kinds.add("div")
    assert kinds == {"plain", "html", "div", "conclusion"}
    bundle = Bundle.model_validate_json((out / "fhir" / "bundle.json").read_text())
    assert bundle.type == "collection"
    types = [e.resource.get_resource_type() for e in bundle.entry]
    assert types.count("Patient") == 1 and types.count("DiagnosticReport") == fm["bundle_reports"]
    pid = next(e.resource.id for e in bundle.entry if e.resource.get_resource_type() == "Patient")
    drs = [e.resource for e in bundle.entry if e.resource.get_resource_type() == "DiagnosticReport"]
    assert {d.subject.reference for d in drs} == {f"Patient/{pid}"}
    assert fm["reports"] == len(valid) + len(drs)


def test_hl7(sample):
    out, m = sample
    fm = m["formats"]["hl7"]
    raw = (out / "hl7" / "oru.hl7").read_bytes().decode()
    chunks = [c for c in raw.split("\n") if c.strip()]  # messages are \n-separated, segments \r
    assert len(chunks) == fm["messages"] == N + 1
    good, broken = [], []
    for c in chunks:
        try:
            good.append(hl7.parse(c))
        except hl7.ParseException:
            broken.append(c)
    assert len(broken) == fm["bad"]["bad_hl7"] == 1 and "MSH" not in broken[0]
    assert 0 < chunks.index(broken[0]) < len(chunks) - 1  # between good messages
    assert len(good) == fm["reports"] == N
    no_f = no_i = 0
    for msg in good:
        msh, obr = msg.segment("MSH"), msg.segment("OBR")
        assert str(msh[9]) == "ORU^R01^ORU_R01" and str(msh[12]) == "2.5"
        assert str(msg.segment("PID")[3][0][0]).isdigit()
        assert str(obr[2]).startswith("PL") and str(obr[3]).startswith("ACC")
        assert str(obr[4][0][0]) == "36643-5" and len(str(obr[7])) == 12 and str(obr[25]) == "F"
        assert str(msh[7]) > str(obr[7])  # sent after the exam
        obx = msg.segments("OBX")
        assert all(str(s[2]) == "TX" and str(s[3]) for s in obx)
        lines = [str(s[5]) for s in obx]
        assert max(len(x) for x in lines) <= 80
        no_f += "FINDINGS:" not in lines
        no_i += "IMPRESSION:" not in lines
    assert no_f == fm["ineligible"]["no_findings"] and no_i == fm["ineligible"]["no_impression"]


def test_impression_names_findings_generator():
    """Every positive of a case shows in its Findings and Impression, with its side."""
    seen = set()
    for seed in range(3):
        for c in draw_cases(random.Random(seed), 300, mark="XXXX"):
            if not (c.findings and c.impression) or c.defect:
                continue
            fi, im = c.findings.lower(), c.impression.lower()
            for p in c.positives:
                seen.add(p.kind)
                assert re.search(KIND_RE[p.kind], fi), (p.kind, "findings")
                assert re.search(KIND_RE[p.kind], im), (p.kind, "impression")
                if p.side in SIDES:
                    assert p.side in im
            if not c.positives:
                assert re.search(NORMAL_IMPRESSION, im)
                for sent in re.split(r"(?<=\.) ", fi):  # a disease word only when negated
                    if re.search("|".join(KIND_RE.values()), sent):
                        assert re.search(r"\bno\b|normal|intact", sent), sent
    assert seen == set(KIND_RE)


def test_impression_names_findings_on_disk(sample):
    """IU CSV: each MeSH term (and its side) of a report is named in its impression."""
    out, _ = sample
    with open(out / "csv" / "reports.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["findings"] and r["impression"]]
    abnormal = [r for r in rows if r["MeSH"] != "normal"]
    assert abnormal
    for r in abnormal:
        im = r["impression"].lower()
        for term in r["MeSH"].split(";"):
            name, *quals = term.split("/")
            assert re.search(MESH_RE[name], im), (term, "impression")
            for side in set(quals) & set(SIDES):
                assert side in im
    for r in rows:
        if r["MeSH"] == "normal" and words(r["impression"]) >= 2:
            assert re.search(NORMAL_IMPRESSION, r["impression"].lower())


def test_gzip_and_tar_headers_fixed(sample):
    out, _ = sample
    for rel in ("openi/NLMCXR_reports.tgz", "mimic/mimic-cxr-2.0.0-split.csv.gz"):
        head = (out / rel).read_bytes()[:10]
        assert head[:2] == b"\x1f\x8b" and head[4:8] == b"\0\0\0\0"  # gzip MTIME = 0
    assert gzip.decompress((out / "mimic/mimic-cxr-2.0.0-split.csv.gz").read_bytes()).startswith(
        b"dicom_id,"
    )
