"""Source readers MIMIC-CXR, OpenI XML and CSV on fixtures written into tmp_path, plus the real IU CSV.

.venv/bin/pytest tests/test_sources.py -q
"""

from __future__ import annotations

import gzip
import pickle
from collections import Counter

import pytest
from fixtures_sources import MIMIC_REPORT, openi_xml, write_mimic_dir, write_mimic_zip, write_tgz

from radgpt.config import CsvMapCfg, IngestCfg
from radgpt.ingest import sections
from radgpt.ingest.sources import csvx, detect, mimic, openi
from radgpt.ingest.sources.base import Bad, Raw
from radgpt.sample.csvx import csv_text
from radgpt.sample.mimic import split_csv


def read_all(mod, path, cfg):
    us = list(mod.units(path, cfg))
    return us, [r for u in us for r in mod.read(u, cfg)]


# ---- MIMIC-CXR ---------------------------------------------------------------------------------

REPORTS = {
    (10000032, 50414267): MIMIC_REPORT.encode(),
    (10000032, 53189527): b"FINAL REPORT\nFINDINGS: Stable.\nIMPRESSION: Unchanged.\n",
    (10000764, 57375967): "IMPRESSION: Caf\xe9 opacity.".encode("latin-1"),  # not UTF-8
    (10000898, 50771383): b"   \n",  # empty
    (10000935, 51178377): b"FINDINGS: " + b"x " * 600,  # over the size limit below
}
SPLIT = split_csv(
    [
        ("d1", 50414267, 10000032, "train"),
        ("d2", 50414267, 10000032, "train"),  # several dicoms per study
        ("d3", 53189527, 10000032, "test"),
    ]
)


def _check_mimic(rs, split=True):
    raws = {r.native_id: r for r in rs if isinstance(r, Raw)}
    bad = {r.member.rsplit("/", 1)[-1]: r.reason for r in rs if isinstance(r, Bad)}
    assert set(raws) == {"s50414267", "s53189527"}
    assert bad == {
        "s57375967.txt": "bad_encoding",
        "s50771383.txt": "no_text",
        "s51178377.txt": "too_large",
    }
    r = raws["s50414267"]
    assert r.patient_id == "p10000032" and r.study_id == "s50414267"
    assert r.member == "files/p10/p10000032/s50414267.txt"
    assert r.text == MIMIC_REPORT
    f, i = sections.pick(sections.parse(r.text))
    assert f.startswith("The lungs are clear") and i == "No acute cardiopulmonary process."
    if split:
        assert (r.split, raws["s53189527"].split) == ("train", "test")
    big = next(b for b in rs if isinstance(b, Bad) and b.reason == "too_large")
    assert big.sha256 is None and big.size > 1000  # quarantined without reading it


def test_mimic_dir_with_split_file(tmp_path):
    root = write_mimic_dir(tmp_path / "mimic", REPORTS)
    (root / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(gzip.compress(SPLIT.encode()))
    cfg = IngestCfg(max_member_bytes=1000)
    assert detect(root) == "mimic"
    (root / "files/p10/p10000032/notes.txt").write_text("not a report")  # a not_a_report row
    us, rs = read_all(mimic, root, cfg)
    # one unit per patient folder; the driver never lists or stats the report files
    assert [u.member for u in us] == [
        "files/p10/p10000032/", "files/p10/p10000764/", "files/p10/p10000898/",
        "files/p10/p10000935/",
    ]  # fmt: skip
    assert all(u.uri == str(root.resolve()) and u.extra for u in us)
    assert pickle.loads(pickle.dumps(us)) == us  # units travel to Spark executors
    assert len(rs) == 6
    assert {r.uri for r in rs} == {str((root / r.member).resolve()) for r in rs}  # the file
    notes = rs.pop(next(i for i, r in enumerate(rs) if r.member.endswith("notes.txt")))
    assert notes.reason == "not_a_report" and notes.sha256 is None  # listed, never read
    _check_mimic(rs)


def test_mimic_zip_batches_and_split_member(tmp_path):
    z = write_mimic_zip(tmp_path / "reports.zip", REPORTS, {"mimic-cxr-2.0.0-split.csv": SPLIT})
    cfg = IngestCfg(max_member_bytes=1000, csv_rows_per_unit=2)
    assert detect(z) == "mimic"
    us, rs = read_all(mimic, z, cfg)
    assert [(u.start, u.stop) for u in us] == [(0, 2), (2, 4), (4, 5)]
    _check_mimic(rs)
    mimic.load_split.cache_clear()


def test_mimic_split_from_cfg_and_none(tmp_path):
    root = write_mimic_dir(tmp_path / "m", REPORTS)
    us, rs = read_all(mimic, root, IngestCfg(max_member_bytes=1000))
    assert all(r.split is None for r in rs if isinstance(r, Raw))
    sf = tmp_path / "elsewhere.csv"
    sf.write_text(SPLIT)
    _, rs = read_all(mimic, root, IngestCfg(max_member_bytes=1000, split_file=str(sf)))
    _check_mimic(rs)


def test_mimic_split_file_variants_and_broken(tmp_path):
    # gzip, quoted and padded ids, an "s" prefix, a split name that is not a split (skipped)
    rows = 'dicom_id,study_id,subject_id,split\nd1," 50414267 ",10000032,train\n'
    rows += "d2,s53189527,10000032,test\nd3,59999999,10000032,holdout\n"
    sf = tmp_path / "mimic-cxr-2.0.0-split.csv.gz"
    sf.write_bytes(gzip.compress(rows.encode()))
    assert mimic.load_split(str(sf)) == {"s50414267": "train", "s53189527": "test"}
    # a split file without the needed columns fails the task loudly, naming the file and columns
    root = write_mimic_dir(tmp_path / "m", REPORTS)
    bad = tmp_path / "bad.csv"
    bad.write_text("dicom_id,subject_id\nd1,10000032\n")
    cfg = IngestCfg(max_member_bytes=1000, split_file=str(bad))
    with pytest.raises(ValueError, match=r"bad.csv.*lacks columns \['split', 'study_id'\]"):
        read_all(mimic, root, cfg)
    mimic.load_split.cache_clear()


# ---- OpenI XML -----------------------------------------------------------------------------------

DOC1 = openi_xml(
    1,
    {
        "COMPARISON": "None.",
        "INDICATION": "Positive TB test",
        "FINDINGS": "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema.",
        "IMPRESSION": "Normal chest x-XXXX.",
    },
    major=["normal"],
)
DOC2 = openi_xml(
    2,
    {"FINDINGS": "Borderline cardiomegaly.", "IMPRESSION": ""},
    major=["Cardiomegaly/borderline"],
    minor=["Pulmonary Artery/enlarged"],
)
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<eCitation><Abstract><AbstractText Label="FINDINGS">&x;</AbstractText></Abstract></eCitation>"""
BROKEN = b"<eCitation><Abstract><AbstractText Label='FINDINGS'>open"


def test_openi_tgz_ranges_sections_mesh_and_bad_xml(tmp_path):
    members = {
        "ecgen-radiology/1.xml": DOC1,
        "ecgen-radiology/2.xml": DOC2,
        "ecgen-radiology/README.txt": b"not a report",
        "ecgen-radiology/3.xml": BROKEN,
        "ecgen-radiology/4.xml": XXE,
        "ecgen-radiology/5.xml": openi_xml(5, {"FINDINGS": "y " * 2000}),
    }
    tgz = write_tgz(tmp_path / "NLMCXR_reports.tgz", members)
    cfg = IngestCfg(csv_rows_per_unit=2, max_member_bytes=600 + len(DOC1))
    assert detect(tgz) == "openi"
    us, rs = read_all(openi, tgz, cfg)
    assert [(u.start, u.stop) for u in us] == [(0, 2), (2, 4), (4, 6)]
    assert len(rs) == 6  # 6 members, each a Raw or a Bad
    r1, r2, readme, b3, b4, b5 = rs
    assert (readme.member, readme.reason) == ("ecgen-radiology/README.txt", "not_a_report")
    assert r1.native_id == "1" and r1.study_id == "CXR1" and r1.member == "ecgen-radiology/1.xml"
    assert r1.sections == {
        "comparison": "None.",
        "indication": "Positive TB test",
        "findings": "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema.",
        "impression": "Normal chest x-XXXX.",
    }
    assert r1.meta["mesh"] == "normal" and r1.meta["images"] == "CXR1_1_IM-0001-3001"
    assert r2.sections == {"findings": "Borderline cardiomegaly."}  # empty IMPRESSION dropped
    assert r2.meta["mesh"] == "Cardiomegaly/borderline; Pulmonary Artery/enlarged"
    assert (b3.reason, b4.reason, b5.reason) == ("bad_xml", "bad_xml", "too_large")
    assert "passwd" not in b4.detail and "root" not in str(b4)  # XXE refused, nothing resolved


def test_openi_dir_and_single_file(tmp_path):
    d = tmp_path / "ecgen-radiology"
    d.mkdir()
    (d / "1.xml").write_bytes(DOC1)
    (d / "3.xml").write_bytes(BROKEN)
    cfg = IngestCfg()
    assert detect(d) == "openi" and detect(d / "1.xml") == "openi"
    us, rs = read_all(openi, d, cfg)
    assert [type(r).__name__ for r in rs] == ["Raw", "Bad"] and len(us) == 2
    assert rs[0].native_id == "1" and rs[1].member == "3.xml"
    _, (one,) = read_all(openi, d / "1.xml", cfg)
    assert one.sections["impression"] == "Normal chest x-XXXX." and one.sha256 == rs[0].sha256


# ---- CSV -------------------------------------------------------------------------------------------

HEADER = csv_text([])  # the IU columns: uid,MeSH,Problems,image,indication,...,impression


def test_csv_quoted_multiline_rows_and_units(tmp_path):
    rows = [
        (1, "normal", "normal", "Xray Chest PA and Lateral", "Positive TB test", "None.",
         "The heart is normal.\nThe lungs are clear.", "Normal chest."),
        (2, "Cardiomegaly/borderline;Pulmonary Artery/enlarged", "Cardiomegaly", "Chest, 2 views",
         "", "", 'Borderline cardiomegaly, "mild".', "No acute findings."),
        (3, "normal", "normal", "PA", "", "", "", "No acute disease."),
    ]  # fmt: skip
    text = csv_text(rows)  # quoted fields: a newline, commas, doubled quotes
    assert '"The heart is normal.\nThe lungs are clear."' in text and '""mild""' in text
    p = tmp_path / "reports.csv"
    p.write_text(text)
    cfg = IngestCfg(csv_rows_per_unit=2)
    assert detect(p) == "csv"
    us, rs = read_all(csvx, p, cfg)
    assert [(u.start, u.stop) for u in us] == [(0, 2), (2, 3)]
    assert [r.native_id for r in rs] == ["1", "2", "3"] and [r.member for r in rs] == [
        "0",
        "1",
        "2",
    ]
    assert rs[0].sections["findings"] == "The heart is normal.\nThe lungs are clear."
    assert rs[0].sections["indication"] == "Positive TB test" and rs[0].exam.startswith("Xray")
    assert rs[1].sections["findings"] == 'Borderline cardiomegaly, "mild".'
    assert rs[1].meta["mesh"] == "Cardiomegaly/borderline;Pulmonary Artery/enlarged"
    assert "findings" not in rs[2].sections
    assert sections.pick(rs[0].sections) == (
        "The heart is normal. The lungs are clear.",
        "Normal chest.",
    )
    # sha256 is of the row's raw bytes: a change in one row changes only its hash
    p.write_text(text.replace("Normal chest.", "Normal chest!"))
    _, rs2 = read_all(csvx, p, cfg)
    assert [a.sha256 == b.sha256 for a, b in zip(rs, rs2, strict=True)] == [False, True, True]


def test_csv_bad_rows_encoding_and_gz(tmp_path):
    rows = [
        b"1,normal,normal,PA,,,Heart normal.,Normal.\n",
        b"2,normal,normal,PA,,,Caf\xe9 lungs.,Normal.\n",  # latin-1 byte: bad_encoding
        b"3,normal,normal,PA,,Heart normal.,Normal.\n",  # a field short: bad_csv
        b",normal,normal,PA,,,Heart normal.,Normal.\n",  # empty id: bad_csv
        b"5,normal,normal,PA,,,Heart normal.,Normal.\n",
    ]
    p = tmp_path / "r.csv.gz"
    p.write_bytes(gzip.compress(HEADER.encode() + b"".join(rows)))
    assert detect(p) == "csv"
    _, rs = read_all(csvx, p, IngestCfg(csv_rows_per_unit=3))
    assert [getattr(r, "reason", "ok") for r in rs] == [
        "ok",
        "bad_encoding",
        "bad_csv",
        "bad_csv",
        "ok",
    ]
    assert [r.member for r in rs] == ["0", "1", "2", "3", "4"]
    assert "Caf" not in rs[1].detail and "findings" in rs[1].detail


def test_csv_unclosed_quote_is_one_bad_row_and_the_next_rows_arrive(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(HEADER + '1,a,b,c,d,e,f,g\n2,a,b,c,d,e,"open,g\n3,a,b,c,d,e,f,g\n')
    us, rs = read_all(csvx, p, IngestCfg())
    assert us[0].stop == 3  # the driver's count and read() agree: row 2 alone is broken
    assert [getattr(r, "reason", "ok") for r in rs] == ["ok", "bad_csv", "ok"]
    assert rs[2].native_id == "3" and rs[2].member == "2"


def test_csv_missing_column_error_and_text_column(tmp_path):
    p = tmp_path / "export.csv"
    p.write_text(
        "accession,report,impression,mrn,when\n"
        'A1,"FINDINGS: Lungs clear.\nIMPRESSION: Normal.",,M1,2021-01-02T03:04:05+01:00\n'
    )
    # the default mapping does not fit: the file is one bad_header row naming the mapping
    _, (bad,) = read_all(csvx, p, IngestCfg())
    assert bad.reason == "bad_header" and "id='uid'" in bad.detail and "accession" not in bad.detail
    m = CsvMapCfg(
        id="accession", findings="impression", impression="impression", indication=None,
        comparison=None, exam=None, mesh=None, text="report", patient_id="mrn", exam_time="when",
    )  # fmt: skip
    cfg = IngestCfg(csv=m)
    _, (r,) = read_all(csvx, p, cfg)
    assert r.native_id == "A1" and r.patient_id == "M1" and r.sections == {}
    assert r.exam_time.isoformat() == "2021-01-02T02:04:05+00:00"
    assert sections.pick(sections.merge(r.text, r.sections)) == ("Lungs clear.", "Normal.")


@pytest.mark.data
def test_real_iu_csv_reconciles(iu_csv):
    cfg = IngestCfg(csv_rows_per_unit=1000)
    us, rs = read_all(csvx, iu_csv, cfg)
    assert len(us) == 4 and us[-1].stop == 3251
    assert len(rs) == 3251  # every row comes back as Raw or Bad
    kinds = Counter(type(r).__name__ for r in rs)
    assert kinds["Raw"] + kinds["Bad"] == 3251
    raws = [r for r in rs if isinstance(r, Raw)]
    assert len({r.native_id for r in raws}) == len(raws)  # uid is unique
    both = [r for r in raws if r.sections.get("findings") and r.sections.get("impression")]
    assert len(both) > 2000
    for r in both:
        f, i = sections.pick(r.sections)
        assert f and i and sections.word_count(f) > 0
