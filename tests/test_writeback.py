"""Drafts table commits (atomic, idempotent, 4 readers) and FHIR NDJSON export (validated R4B).

.venv/bin/pytest tests/test_writeback.py -q
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.provenance import Provenance

from radgpt.config import FhirCfg
from radgpt.model.ids import draft_id
from radgpt.schema import ContractError, field_names
from radgpt.writeback import drafts, fhir
from radgpt.writeback.provenance import AI_LABEL, fhir_provenance

GEN = '{"do_sample":false,"engine":"transformers","max_new_tokens":16}'


def rows(n: int, run_id: str = "draft-a", run_date: str = "2024-05-01", start: int = 0):
    t = dt.datetime(2024, 5, 1, 3, 0, tzinfo=dt.UTC)
    out = []
    for i in range(start, start + n):
        rid = f"openi:{i}"
        out.append(
            {
                "draft_id": draft_id(rid, "lora-x", "chat-v1", "1", GEN),
                "report_id": rid,
                "source": "openi",
                "patient_id": f"p{i}" if i % 2 else None,
                "study_id": f"s{i}",
                "exam_time": None,  # an OpenI-like source: no exam time, code or accession
                "exam": None,
                "exam_code": None,
                "accession": None,
                "draft": f"No acute disease {i}.",
                "flags": ["truncated"] if i % 3 == 0 else [],
                "base_model": "/models/tiny",
                "base_model_sha256": "ab" * 32,
                "adapter_id": "lora-x",
                "prompt_name": "chat-v1",
                "prompt_version": "1",
                "generation": GEN,
                "source_sha256": "cd" * 32,
                "findings_sha256": "ef" * 32,
                "run_id": run_id,
                "code_version": "radgpt 0.1.0+test",
                "worker_host": "host",
                "generated_at": t,
                "prompt_tokens": 40 + i,
                "output_tokens": 5,
                "latency_ms": 12.5,
                "run_date": run_date,
            }
        )
    return out


def test_commit_is_idempotent_and_manifested(tmp_path):
    d = tmp_path / "drafts"
    m = drafts.commit_drafts(rows(5), d, "draft-a")
    assert m["rows"] == 5 and m["files"] == ["run_date=2024-05-01/part-draft-a-00000.parquet"]
    assert (d / "_manifests" / "draft-a.json").is_file()
    # same night, same inputs, new run id: nothing new; overlapping batch: only the new ones
    assert drafts.commit_drafts(rows(5, "draft-b"), d, "draft-b")["rows"] == 0
    m3 = drafts.commit_drafts(rows(4, "draft-c", start=3) * 2, d, "draft-c")
    assert (m3["rows"], m3["duplicates"]) == (2, 6)
    t = drafts.read_drafts(d)
    assert sorted(t.column("report_id").to_pylist()) == [f"openi:{i}" for i in range(7)]
    assert t.column_names == field_names("drafts")
    assert len(set(t.column("draft_id").to_pylist())) == 7


def test_a_version_1_drafts_table_stays_readable(tmp_path):
    """Files written before the exam columns existed read them as nulls, before or after new ones."""
    import pyarrow.parquet as pq

    d = tmp_path / "drafts"
    new = rows(2, "draft-b", start=5)
    new[0] |= {"exam": "XR Chest 2V", "accession": "A1"}
    drafts.commit_drafts(rows(2), d, "draft-a")
    drafts.commit_drafts(new, d, "draft-b")
    old = ["exam_time", "exam", "exam_code", "accession"]
    for m in drafts.manifests(d):  # rewrite draft-a's files as version 1 wrote them
        for f in m["files"]:
            if m["run_id"] == "draft-a":
                pq.write_table(pq.read_table(d / f).drop_columns(old), d / f)
    t = drafts.read_drafts(d)
    assert t.column_names == field_names("drafts") and len(t) == 4
    got = {r["report_id"]: (r["exam"], r["accession"]) for r in t.to_pylist()}
    assert got == {
        "openi:0": (None, None),
        "openi:1": (None, None),
        "openi:5": ("XR Chest 2V", "A1"),
        "openi:6": (None, None),
    }
    fhir.write_fhir(t, tmp_path / "fhir", "all")  # and they export


def test_draft_rows_copy_the_reports_exam_columns():
    """What a drafts row takes from its report: every column both contracts share, via select."""
    from radgpt.draft.run import KEEP
    from radgpt.draft.stages import draft_row
    from radgpt.model.spec import ModelSpec

    shared = set(field_names("drafts")) & set(field_names("reports"))
    assert shared <= set(KEEP)
    when = rows(1)[0]["generated_at"]
    report = {k: f"v-{k}" for k in KEEP} | {"draft_id": "d1", "exam_time": when}
    names = ("base_model", "base_model_sha256", "adapter_id", "prompt_name", "prompt_version")
    spec = ModelSpec.model_construct(**dict.fromkeys(names, "x"), generation=GEN)
    out = {"draft": "ok", "prompt_tokens": 1, "output_tokens": 1, "latency_ms": 1.0}
    row = draft_row(spec, report, out, [], {"run_id": "r", "run_date": "2024-05-01"}, "h", when)
    assert {k: row[k] for k in shared} == {k: report[k] for k in shared}
    assert list(row) == field_names("drafts")


def test_bad_rows_leave_nothing_visible(tmp_path):
    d = tmp_path / "drafts"
    bad = rows(3)
    bad[1]["draft"] = None  # non-null field
    with pytest.raises((ContractError, pa.ArrowInvalid)):
        drafts.commit_drafts(bad, d, "draft-bad")
    assert not list(d.glob("run_date=*")) and drafts.manifests(d) == []


def test_crash_between_rename_and_manifest_is_recovered(tmp_path):
    d = tmp_path / "drafts"
    drafts.commit_drafts(rows(2), d, "draft-a")
    # a crashed run: its data file got renamed in, its manifest never written
    drafts.commit_drafts(rows(2, "draft-x", start=10), d, "draft-x")
    (d / "_manifests" / "draft-x.json").unlink()
    assert len(drafts.read_drafts(d)) == 2  # readers through the manifest never see it
    m = drafts.commit_drafts(rows(1, "draft-y", start=20), d, "draft-y")
    assert m["rows"] == 1
    assert not (d / "run_date=2024-05-01" / "part-draft-x-00000.parquet").exists()
    assert len(ds.dataset(d, format="parquet", partitioning="hive").to_table()) == 3


def test_four_readers_agree(tmp_path, spark):
    import duckdb
    import polars as pl

    d = tmp_path / "drafts"
    drafts.commit_drafts(rows(4), d, "draft-a")
    drafts.commit_drafts(rows(3, "draft-b", "2024-05-02", start=4), d, "draft-b")
    want = {f"openi:{i}" for i in range(7)}
    a = ds.dataset(d, format="parquet", partitioning="hive").to_table()
    assert set(a.column("report_id").to_pylist()) == want
    p = pl.read_parquet(str(d / "**" / "*.parquet"), hive_partitioning=True)
    assert set(p["report_id"]) == want and p["flags"].dtype == pl.List(pl.String)
    assert {str(x) for x in p["run_date"]} == {"2024-05-01", "2024-05-02"}
    q = f"select count(*), count(distinct draft_id), max(len(flags)) from read_parquet('{d}/*/*.parquet', hive_partitioning=true)"
    assert duckdb.sql(q).fetchall() == [(7, 7, 1)]
    s = spark.read.parquet(str(d))
    assert s.count() == 7 and set(s.columns) == set(field_names("drafts"))
    assert s.filter("run_date = '2024-05-02'").count() == 3


def test_fhir_export_validates_and_links(tmp_path):
    d, out = tmp_path / "drafts", tmp_path / "fhir"
    drafts.commit_drafts(rows(4), d, "draft-a")
    t = drafts.read_drafts(d)
    res = fhir.write_fhir(t, out, "draft-a")
    assert res["resources"] == 8
    reports = [json.loads(x) for x in (out / "draft-a" / "DiagnosticReport.ndjson").open()]
    provs = [json.loads(x) for x in (out / "draft-a" / "Provenance.ndjson").open()]
    assert len(reports) == len(provs) == 4
    by_id = {r["draft_id"]: r for r in t.to_pylist()}
    for r, p in zip(reports, provs, strict=True):
        DiagnosticReport.model_validate(r)
        Provenance.model_validate(p)
        row = by_id[r["id"]]
        assert r["status"] == "preliminary" and r["conclusion"] == row["draft"]
        assert r["extension"][0]["valueReference"]["identifier"]["value"] == row["report_id"]
        assert any(tag["code"] == "ai-draft" for tag in r["meta"]["tag"])
        assert r["issued"] == "2024-05-01T03:00:00.000Z"  # when the draft was generated
        assert p["target"] == [{"reference": f"DiagnosticReport/{r['id']}"}]
        dev = p["contained"][0]
        assert dev["resourceType"] == "Device" and p["agent"][0]["who"]["reference"] == "#model"
        assert {i["value"] for i in dev["identifier"]} == {"ab" * 32, "lora-x"}
        assert p["entity"][0]["role"] == "source"
        assert p["entity"][0]["what"]["identifier"]["value"] == row["report_id"]
        assert p["recorded"].startswith("2024-05-01T03:00:00")
    # export again: skipped, files unchanged
    assert fhir.write_fhir(t, out, "draft-a")["skipped"]


# ---- one test per FHIR rule (docs/writeback.md) ---------------------------------------------------

MRN = "http://hospital.example.org/fhir/sid/mrn"
ACC = "http://hospital.example.org/fhir/sid/accession"
CFG = FhirCfg(patient_id_system=MRN)


def full_row(**kw) -> dict:
    """An HL7-sourced draft with everything the sources can give (and two review flags)."""
    row = rows(1)[0] | {
        "report_id": "hl7:ACC7",
        "source": "hl7",
        "patient_id": "MRN123",
        "study_id": "ACC7",
        "exam_time": dt.datetime(2024, 4, 30, 22, 15, tzinfo=dt.UTC),
        "exam": "XR Chest 2V",
        "exam_code": "http://loinc.org|36643-5",
        "accession": "ACC7",
        "flags": ["truncated", "laterality_mismatch"],
    }
    return row | kw


def references(res) -> list[str]:
    """Every Reference.reference in a resource (literal references a server must resolve)."""
    if isinstance(res, dict):
        return [v for k, v in res.items() if k == "reference"] + [
            x for v in res.values() for x in references(v)
        ]
    return [x for v in res for x in references(v)] if isinstance(res, list) else []


def test_subject_is_a_logical_reference_or_stated_absent():
    hl7 = fhir.diagnostic_report(full_row(), CFG)
    assert hl7["subject"] == {"type": "Patient", "identifier": {"system": MRN, "value": "MRN123"}}
    # a source without patient ids (CSV, OpenI): stated, never invented
    dar = {"extension": [{"url": fhir.DAR, "valueCode": "unknown"}]}
    assert fhir.diagnostic_report(full_row(patient_id=None), CFG)["subject"] == dar
    # a FHIR source's Patient id resolves only on the server it came from
    src = full_row(source="fhir", patient_id="p42")
    assert fhir.diagnostic_report(src, CFG)["subject"] == dar
    same = FhirCfg(patient_id_system=MRN, same_server=True)
    assert fhir.diagnostic_report(src, same)["subject"] == {"reference": "Patient/p42"}
    # nothing for a Bulk $import to resolve but the draft's own contained Device
    assert references(hl7) == []


def test_effective_is_the_exam_time_issued_the_generation_time():
    r = fhir.diagnostic_report(full_row(), CFG)
    assert (r["effectiveDateTime"], r["issued"]) == (
        "2024-04-30T22:15:00.000Z",
        "2024-05-01T03:00:00.000Z",
    )
    r = fhir.diagnostic_report(full_row(exam_time=None), CFG)
    assert "effectiveDateTime" not in r and r["_effectiveDateTime"] == fhir.absent()


def test_category_has_us_core_radiology_and_v2_rad():
    cats = [c["coding"][0]["code"] for c in fhir.diagnostic_report(full_row(), CFG)["category"]]
    assert cats == ["LP29684-5", "RAD"]


def test_code_carries_the_source_exam_code_and_text():
    c = fhir.diagnostic_report(full_row(), CFG)["code"]
    assert [x["code"] for x in c["coding"]] == ["36643-5", "18748-4"]
    assert c["text"] == "XR Chest 2V"
    c = fhir.diagnostic_report(full_row(exam_code=None, exam=None), CFG)["code"]
    assert c == {"coding": [fhir.IMAGING]}  # only what the source gave


def test_accession_is_the_order_identifier_not_the_drafts():
    r = fhir.diagnostic_report(full_row(accession=f"{ACC}|ACC7", study_id="s7"), CFG)
    assert r["identifier"] == [{"system": "urn:radgpt:draft-id", "value": r["id"]}]
    (order,) = r["basedOn"]
    assert order["type"] == "ServiceRequest"
    assert order["identifier"] == {"type": fhir.ACSN, "system": ACC, "value": "ACC7"}
    assert r["imagingStudy"][0]["identifier"] == {"system": fhir.SYS_STUDY, "value": "s7"}
    # HL7: OBR-3 is both; a system from config when the source names none
    r = fhir.diagnostic_report(full_row(), FhirCfg(accession_system=ACC))
    assert r["basedOn"][0]["identifier"]["system"] == ACC and "imagingStudy" not in r
    assert "basedOn" not in fhir.diagnostic_report(full_row(accession=None), CFG)
    # a FHIR source keeps its accession; its ImagingStudy id resolves only on its own server
    src = full_row(source="fhir", accession=f"{ACC}|A1", study_id="ImagingStudy/is1")
    r = fhir.diagnostic_report(src, CFG)
    assert r["basedOn"][0]["identifier"]["value"] == "A1" and "imagingStudy" not in r
    r = fhir.diagnostic_report(src, FhirCfg(same_server=True))
    assert r["imagingStudy"] == [{"reference": "ImagingStudy/is1"}]


def test_review_flags_are_extensions_and_narrative(tmp_path):
    import xml.etree.ElementTree as ET

    row = full_row(flag_details=[("laterality_mismatch", "says left; Findings name no side")])
    r = fhir.diagnostic_report(row, CFG)
    assert "conclusionCode" not in r
    flags = [e for e in r["extension"] if e["url"] == fhir.FLAG_EXT]
    assert [f["extension"][0]["valueCoding"]["code"] for f in flags] == row["flags"]
    assert flags[1]["extension"][1] == {
        "url": "detail",
        "valueString": "says left; Findings name no side",
    }
    div = r["text"]["div"]
    ET.fromstring(div)  # well-formed XHTML
    for text in (fhir.REVIEW, row["draft"], "laterality mismatch: says left"):
        assert text in div
    # a drafts table with a per-flag detail column (map<string,string>) reaches the resource
    t = drafts.to_table([full_row()])
    t = t.append_column(
        "flag_details",
        pa.array([[("truncated", "hit 96 tokens")]], pa.map_(pa.string(), pa.string())),
    )
    fhir.write_fhir(t, tmp_path, "r")
    (dr,) = [json.loads(x) for x in (tmp_path / "r" / "DiagnosticReport.ndjson").open()]
    assert "truncated: hit 96 tokens" in dr["text"]["div"]


def test_ai_label_is_a_security_label_and_the_model_the_author():
    r = fhir.diagnostic_report(full_row(), CFG)
    assert r["meta"]["security"] == [AI_LABEL] and AI_LABEL not in r["meta"]["tag"]
    p = fhir_provenance(full_row(), f"DiagnosticReport/{r['id']}")
    assert p["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert "signature" not in p  # none unless config names a signer


def test_signature_only_when_a_signer_is_configured():
    when = dt.datetime(2024, 5, 1, 6, 0, tzinfo=dt.UTC)
    p = fhir_provenance(full_row(), "DiagnosticReport/x", "Organization/radiology-ai", when)
    (sig,) = p["signature"]
    assert sig["who"] == {"reference": "Organization/radiology-ai"} and "data" not in sig
    assert sig["when"] == "2024-05-01T06:00:00.000Z" and sig["type"][0]["code"].endswith(".14")


def test_us_core_profile_only_when_its_must_haves_are_there():
    has = lambda r: fhir.US_CORE_NOTE in r["meta"].get("profile", [])  # noqa: E731
    assert has(fhir.diagnostic_report(full_row(), CFG))
    assert not has(fhir.diagnostic_report(full_row(patient_id=None), CFG))
    assert not has(fhir.diagnostic_report(full_row(exam_time=None), CFG))
    assert not has(fhir.diagnostic_report(full_row(), FhirCfg()))  # an MRN without its system
    assert not has(
        fhir.diagnostic_report(full_row(), FhirCfg(patient_id_system=MRN, us_core=False))
    )


def test_run_writeback_exports_pending_runs(tmp_path):
    from radgpt.config import load_config

    cfg = load_config(overrides={"paths.root": str(tmp_path)})
    drafts.commit_drafts(rows(2), cfg.path("drafts"), "draft-a")
    drafts.commit_drafts(rows(2), cfg.path("drafts"), "draft-b")  # 0 rows: nothing to export
    done = fhir.run_writeback(cfg)
    assert [x["run_id"] for x in done] == ["draft-a"]
    assert fhir.run_writeback(cfg) == []
    with pytest.raises(FileNotFoundError):
        fhir.run_writeback(cfg, run_id="draft-zzz")


# ---- docs/writeback.md: its example resources are what write_fhir writes ---------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "writeback.md"
BLOCK = re.compile(r"(<!-- example: (\w+) -->\n```json\n)(.*?)(\n```)", re.S)


def example_export(tmp_path) -> dict[str, dict]:
    """The doc's fixed draft (an HL7 report with a review flag and its detail) through write_fhir."""
    row = full_row(
        draft_id=draft_id("hl7:ACC7", "lora-x", "chat-v1", "1", GEN),
        base_model="/models/qwen2.5-7b-instruct",
        draft="Left lower lobe opacity, possibly pneumonia.",
        flags=["laterality_mismatch"],
        accession=f"{ACC}|ACC7",
    )
    t = drafts.to_table([row])
    detail = [[("laterality_mismatch", "says left; the Findings name no side")]]
    t = t.append_column("flag_details", pa.array(detail, pa.map_(pa.string(), pa.string())))
    cfg = FhirCfg(patient_id_system=MRN, signer="Organization/radiology-ai")
    fhir.write_fhir(t, tmp_path, "draft-example", cfg=cfg)
    out = {}
    for name in ("DiagnosticReport", "Provenance"):
        (res,) = [json.loads(x) for x in (tmp_path / "draft-example" / f"{name}.ndjson").open()]
        out[name] = res
    out["Provenance"]["signature"][0]["when"] = "2024-05-01T06:30:00.000Z"  # the export's clock
    return out


def test_doc_example_is_what_write_fhir_writes(tmp_path):
    """RADGPT_UPDATE_DOCS=1 rewrites the doc's example blocks from the code."""
    got = example_export(tmp_path)
    text = DOC.read_text()
    if os.environ.get("RADGPT_UPDATE_DOCS"):
        text = BLOCK.sub(lambda m: m[1] + json.dumps(got[m[2]], indent=2) + m[4], text)
        DOC.write_text(text)
    blocks = {m[2]: json.loads(m[3]) for m in BLOCK.finditer(text)}
    assert blocks == got, "docs/writeback.md is stale: RADGPT_UPDATE_DOCS=1 pytest -k doc_example"


def test_v1_drafts_read_with_the_v2_defaults(tmp_path):
    """A drafts file written before flag_observations/draft_raw existed still reads (and commits)."""
    import pyarrow.parquet as pq

    from radgpt import table
    from radgpt.schema import arrow_schema, spec

    assert spec("drafts")["version"] == 4
    d = tmp_path / "drafts"
    old = pa.Table.from_pylist(rows(3)).drop_columns(["run_date"])  # a v1 file: no new columns
    assert "flag_observations" not in old.column_names and "draft_raw" not in old.column_names
    f = table.staging_dir(d, "draft-old") / "run_date=2024-05-01" / "part.parquet"
    f.parent.mkdir(parents=True)
    pq.write_table(old, f)
    table.commit(d, "draft-old", {"rows": 3})
    new = rows(2, "draft-new", "2024-05-02", start=3)
    new[0] |= {"flags": ["omits_finding"], "flag_observations": ["omits_finding:Edema"],
               "draft": "Clear lungs.", "draft_raw": "Clear lungs. ."}  # fmt: skip
    drafts.commit_drafts(new, d, "draft-new")
    t = drafts.read_drafts(d).sort_by("report_id")
    assert t.schema == arrow_schema("drafts")
    assert t["flag_observations"].to_pylist() == [[], [], [], ["omits_finding:Edema"], []]
    assert t["draft_raw"].to_pylist() == [None, None, None, "Clear lungs. .", None]
    # rows made by code that predates the columns commit with the defaults too
    drafts.commit_drafts(rows(1, "draft-c", start=9), d, "draft-c")
    assert drafts.read_drafts(d, ["flag_observations"]).num_rows == 6


def test_fhir_carries_the_flag_observations_outside_conclusion_code():
    row = drafts.to_table(rows(1)).to_pylist()[0] | {
        "flags": ["laterality_mismatch", "omits_finding", "adds_finding"],
        "flag_observations": ["omits_finding:Pleural Effusion", "adds_finding:Cardiomegaly"],
    }
    r = fhir.diagnostic_report(row)
    DiagnosticReport.model_validate(r)
    assert "conclusionCode" not in r
    assert fhir.flag_details(row) == {
        "omits_finding": ["Pleural Effusion"], "adds_finding": ["Cardiomegaly"]
    }  # fmt: skip
    ext = [e for e in r["extension"] if e["url"] == fhir.FLAG_EXT]
    assert len(ext) == 3 and "Pleural Effusion" in json.dumps(ext[1])
    assert "Cardiomegaly" in json.dumps(ext[2]) and "Cardiomegaly" not in json.dumps(ext[0])
    assert "Pleural Effusion" in r["text"]["div"] and row["draft"] in r["text"]["div"]
