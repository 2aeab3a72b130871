"""Drafts table commits (atomic, idempotent, 4 readers) and FHIR NDJSON export (validated R4B).

.venv/bin/pytest tests/test_writeback.py -q
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.provenance import Provenance

from radgpt.model.ids import draft_id
from radgpt.schema import ContractError, field_names
from radgpt.writeback import drafts, fhir

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
        assert {"system": "urn:radgpt:report-id", "value": row["report_id"]}.items() <= {
            **r["identifier"][1]
        }.items()
        assert r["extension"][0]["valueReference"]["identifier"]["value"] == row["report_id"]
        assert any(tag["code"] == "ai-draft" for tag in r["meta"]["tag"])
        assert r.get("subject") == (
            {"reference": f"Patient/{row['patient_id']}"} if row["patient_id"] else None
        )
        assert p["target"] == [{"reference": f"DiagnosticReport/{r['id']}"}]
        dev = p["contained"][0]
        assert dev["resourceType"] == "Device" and p["agent"][0]["who"]["reference"] == "#model"
        assert {i["value"] for i in dev["identifier"]} == {"ab" * 32, "lora-x"}
        assert p["entity"][0]["role"] == "source"
        assert p["entity"][0]["what"]["identifier"]["value"] == row["report_id"]
        assert p["recorded"].startswith("2024-05-01T03:00:00")
    # export again: skipped, files unchanged
    assert fhir.write_fhir(t, out, "draft-a")["skipped"]


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


def test_v1_drafts_read_with_the_v2_defaults(tmp_path):
    """A drafts file written before flag_observations/draft_raw existed still reads (and commits)."""
    import pyarrow.parquet as pq

    from radgpt import table
    from radgpt.schema import arrow_schema, spec

    assert spec("drafts")["version"] == 2
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
    assert [c["coding"][0]["code"] for c in r["conclusionCode"]] == row["flags"]  # flags only
    assert "Pleural Effusion" not in json.dumps(r["conclusionCode"])
    ext = [e for e in r["extension"] if e["url"] == fhir.REVIEW_EXT]
    got = {
        next(x["valueCode"] for x in e["extension"] if x["url"] == "flag"): [
            x["valueCoding"]["code"] for x in e["extension"] if x["url"] == "observation"
        ]
        for e in ext
    }
    assert got == {"laterality_mismatch": [], "omits_finding": ["Pleural Effusion"],
                   "adds_finding": ["Cardiomegaly"]}  # fmt: skip
    div = r["text"]["div"]
    assert r["text"]["status"] == "extensions" and div.startswith(
        '<div xmlns="http://www.w3.org/1999/xhtml">'
    )
    assert "omits finding: Pleural Effusion" in div and row["draft"] in div
    plain = fhir.diagnostic_report(drafts.to_table(rows(2)).to_pylist()[1])
    assert "text" not in plain and len(plain["extension"]) == 1  # unflagged: source link only
