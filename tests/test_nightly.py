"""The nightly job end to end (real Spark ingest of the synthetic sample, real local Ray drafting
with the tiny model, FHIR write-back), its idempotent second night, and a failing night.

    .venv/bin/pytest tests/test_nightly.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radgpt import cli
from radgpt.config import load_config

REPO = Path(__file__).resolve().parent.parent


def test_failed_night_exits_nonzero_and_saves_summary(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    conf = str(REPO / "conf" / "local.yaml")  # ingest.inputs = the sample
    rc = cli.main(
        [
            "nightly",
            "--config",
            conf,
            "--set",
            f"paths.root={tmp_path}",
            "--set",
            f"model.base={missing}",
        ]
    )
    assert rc == 1
    out = capsys.readouterr().out
    assert "FAILED   model: FileNotFoundError" in out
    (summary,) = (tmp_path / "runs").glob("nightly-*.json")
    s = json.loads(summary.read_text())
    assert s["status"] == "failed" and [f["step"] for f in s["failures"]] == ["model"]
    assert s["steps"]["sample"]["result"]["reports"] > 0  # the missing sample got written first
    assert (tmp_path / "sample" / "MANIFEST.json").is_file() and "ingest" not in s["steps"]


@pytest.mark.slow
def test_nightly_end_to_end(tmp_path, tiny_model_dir, spark, ray_local):
    from radgpt.nightly import run_nightly
    from radgpt.sample.write import write_sample
    from radgpt.table import read_reports
    from radgpt.writeback.drafts import read_drafts

    cfg = load_config(
        REPO / "conf" / "local.yaml",
        overrides={
            "paths.root": str(tmp_path),
            "model.base": str(tiny_model_dir),
            "model.adapter": None,  # the shipped adapter belongs to SmolLM2, not the tiny model
            "draft.max_new_tokens": 4,
            "draft.batch_size": 8,
            "draft.cpus_per_actor": 1,
        },
    )
    write_sample(cfg.path("sample"), n=3)
    s = run_nightly(cfg, spark=spark)
    assert s["status"] == "ok", s["failures"]
    assert list(s["steps"]) == ["sample", "model", "ingest", "draft", "writeback", "outcomes"]
    assert s["steps"]["outcomes"]["result"]["linked"] == 0  # the sample's reports are all new
    assert s["steps"]["sample"]["result"] is None  # present: left alone
    d = s["steps"]["draft"]["result"]
    reports = read_reports(cfg).to_pylist()
    want = {
        r["report_id"]
        for r in reports
        if (r["findings"] or "").strip() and (r["eligible"] or not (r["impression"] or "").strip())
    }
    assert want and d["selected"] == d["committed"] == len(want)
    assert set(read_drafts(cfg.path("drafts")).column("report_id").to_pylist()) == want
    (exp,) = s["steps"]["writeback"]["result"]["exported"]
    assert exp["resources"] == 2 * len(want)
    lines = (cfg.path("fhir") / d["run_id"] / "DiagnosticReport.ndjson").read_text().splitlines()
    assert len(lines) == len(want)
    # the report's exam reaches the draft and its DiagnosticReport (an HL7 report has all of it)
    hl7 = [r for r in read_drafts(cfg.path("drafts")).to_pylist() if r["source"] == "hl7"]
    assert hl7 and all(r["exam_time"] and r["exam_code"] and r["accession"] for r in hl7)
    drs = {x["id"]: x for x in map(json.loads, lines)}
    assert all({"effectiveDateTime", "basedOn"} <= set(drs[r["draft_id"]]) for r in hl7)
    assert json.loads((cfg.path("runs") / f"{s['run_id']}.json").read_text())["status"] == "ok"

    import radgpt.cluster

    def no_spark(*a, **k):
        raise AssertionError("a night with no new input started Spark")

    with pytest.MonkeyPatch.context() as mp:  # same inputs: nothing new anywhere, no Spark
        mp.setattr(radgpt.cluster, "spark_session", no_spark)
        again = run_nightly(cfg)
    assert again["status"] == "ok"
    assert again["steps"]["ingest"]["result"]["counts"]["new"] == 0
    assert (
        again["steps"]["draft"]["result"]["selected"],
        again["steps"]["draft"]["result"]["committed"],
    ) == (0, 0)
    assert len(read_drafts(cfg.path("drafts"))) == len(want)
