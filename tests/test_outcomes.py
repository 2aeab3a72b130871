"""Outcomes: drafts meet their final reports (accepted / edited / replaced), found among the report
versions of the reports table (a signed report is version n+1, ingest state `corrected`), and the
rates per night, adapter and review flag.

    .venv/bin/pytest tests/test_outcomes.py -q

The end-to-end test is the real thing on 2 cores: HL7 and FHIR preliminary reports without an
Impression are ingested by Spark and drafted on Ray with the tiny model; a later night brings their
final reports (the same HL7 order, re-sent with OBR-25 F; a new FHIR DiagnosticReport with the same
accession), built from the drafts so that each outcome appears.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from radgpt.config import load_config
from radgpt.draft.flags import words
from radgpt.loop.outcomes import classify, edit_distance, levenshtein, link, rates

UTC = dt.UTC
FINDINGS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax is seen.",
    "Mild cardiomegaly. Small left pleural effusion. Right lower lobe opacity is present today.",
    "There is a 1 cm nodule in the right upper lobe. Degenerative changes of the thoracic spine.",
    "Stable postoperative changes. The lungs are clear. No pneumothorax. Heart size is normal.",
    "Lungs are hyperinflated. No focal consolidation. No pleural effusion. Heart size normal here.",
]


# ---- pure pieces ------------------------------------------------------------------------------


def test_edit_distance_and_classes():
    cfg = load_config(None, env={}).outcomes
    assert levenshtein(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert edit_distance("No acute disease.", "no ACUTE disease") == 0  # words, any case/punct
    assert edit_distance("No acute disease.", "No acute cardiopulmonary disease.") == 0.25
    assert edit_distance("", "") == 0 and edit_distance("Clear lungs.", "") == 1
    assert [classify(d, cfg) for d in (0, 0.25, 0.69, 0.7, 1)] == [
        "accepted", "edited", "edited", "replaced", "replaced"
    ]  # fmt: skip


def _t(h: int) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime(2026, 1, 1, h, tzinfo=UTC))


def _draft(i: int, **kw) -> dict:
    return {"draft_id": f"d{i}", "report_id": f"hl7:A{i}", "source": "hl7", "patient_id": "p1",
            "study_id": f"A{i}", "accession": f"ACC{i}", "draft": "No acute disease.", "flags": [],
            "adapter_id": "lora-x", "adapter_version": None, "generated_at": _t(2),
            "run_date": "2026-01-01", **kw}  # fmt: skip


def _version(rid: str, h: int, **kw) -> dict:
    return {"report_id": rid, "source": "hl7", "patient_id": "p1", "study_id": None,
            "accession": None, "status": "F", "impression": "No acute disease.",
            "ingest_run_id": f"ingest-{h}", "ingested_at": _t(h), **kw}  # fmt: skip


def test_link_prefers_the_same_report_then_accession_then_study_and_only_later_signed_ones():
    cfg = load_config(None, env={}).outcomes
    drafts = pd.DataFrame([_draft(i) for i in range(1, 8)])
    versions = pd.DataFrame(
        [
            _version("hl7:A1", 1, status="P", impression=None),  # the drafted version itself
            _version("hl7:A1", 5, accession="ACC1"),  # signed later: the same report
            _version("fhir:x", 4, source="fhir", accession="ACC1"),  # same accession: 2nd choice
            _version("fhir:y", 4, source="fhir", accession="ACC2"),  # accession only
            _version("hl7:Z3", 4, study_id="A3"),  # same source + study
            _version("fhir:z", 4, source="fhir", study_id="A4"),  # study of another source: no
            _version("hl7:A5", 1),  # signed BEFORE the draft: not its outcome
            _version("hl7:A6", 5, status="P"),  # a later version, still preliminary
            _version(
                "fhir:w", 5, source="fhir", accession="ACC7", patient_id="p2"
            ),  # other patient
        ]
    )
    got = link(drafts, versions, cfg).set_index("draft_id")
    assert sorted(got.index) == ["d1", "d2", "d3"]
    assert got.loc["d1", ["f_report_id", "link"]].tolist() == ["hl7:A1", "report_id"]
    assert got.loc["d2", ["f_report_id", "link"]].tolist() == ["fhir:y", "accession"]
    assert got.loc["d3", ["f_report_id", "link"]].tolist() == ["hl7:Z3", "study_id"]
    none = load_config(None, {"outcomes.no_status_is_final": False}, env={}).outcomes
    v2 = versions.assign(status=None)
    assert link(drafts, v2, cfg).shape[0] == 4 and link(drafts, v2, none).empty  # + hl7:A6


def test_link_takes_the_first_final_version_after_the_draft():
    """Versions of one report_id (radgpt.table report versions): a preliminary v2, a final v3, an
    amended v4: the draft of v1 meets v3; a draft generated after v3 meets v4."""
    cfg = load_config(None, env={}).outcomes
    versions = pd.DataFrame(
        [
            _version("hl7:A1", 1, status="P", impression=None, version=1),
            _version("hl7:A1", 3, status="P", impression="Preliminary read.", version=2),
            _version("hl7:A1", 5, status="F", impression="Final read.", version=3),
            _version("hl7:A1", 7, status="C", impression="Corrected read.", version=4),
            _version("hl7:A1", 9, status="F", impression=None, version=5),  # no Impression
        ]
    )
    drafts = pd.DataFrame([_draft(1), _draft(2, report_id="hl7:A1", generated_at=_t(6))])
    got = link(drafts, versions, cfg).set_index("draft_id")
    assert got.loc["d1", ["f_version", "f_impression"]].tolist() == [3, "Final read."]
    assert got.loc["d2", ["f_version", "f_impression"]].tolist() == [4, "Corrected read."]
    assert link(drafts.assign(generated_at=_t(8)), versions, cfg).empty  # nothing final since


# ---- end to end: Spark ingest, Ray drafting, a later night of final reports -------------------


def hl7_message(k: int, acc: str, findings: str, impression: str | None, status: str, sent: str):
    from radgpt.sample.hl7 import IMPRESSION_OBS, STUDY_OBS, hl7_escape, msh, obr, obx, orc, pid

    segs = [msh(f"MSG{k:04d}{status}", sent), pid("7654321", "19600101", "F"),
            orc(f"PL{k}", acc), obr(f"PL{k}", acc, "202601010800", sent[:12])[:-1] + status]  # fmt: skip
    lines = [
        ("EXAMINATION: XR CHEST 2V", STUDY_OBS),
        ("FINDINGS:", STUDY_OBS),
        (findings, STUDY_OBS),
    ]
    if impression:
        lines += [("IMPRESSION:", IMPRESSION_OBS), (impression, IMPRESSION_OBS)]
    return segs + [obx(j, hl7_escape(x), code) for j, (x, code) in enumerate(lines, 1)]


def fhir_report(rid: str, acc: str, findings: str, impression: str | None, status: str) -> str:
    from radgpt.sample.fhir import diagnostic_report, presented_form

    res = diagnostic_report(rid, "pat-1", acc, "2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z")
    text = f"FINDINGS:\n{findings}\n" + (f"\nIMPRESSION:\n{impression}\n" if impression else "")
    res |= {"status": status, "presentedForm": presented_form(text, "text/plain")}
    return json.dumps(res)


def write_night(d, msgs: list, fhir: list[str]):
    from radgpt.sample.hl7 import hl7_batch

    d.mkdir(parents=True)
    (d / "oru.hl7").write_bytes(hl7_batch(msgs))
    (d / "reports.ndjson").write_text("\n".join(fhir) + "\n")
    return d


@pytest.fixture(scope="module")
def wordy_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny Llama, able to say words: every token but " <letters>" gets a zero embedding
    (tied: a zero logit), so greedy drafts are words, not the newlines the random model emits."""
    import re
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tmp_path_factory.mktemp("wordy")
    shutil.copytree(tiny_model_dir, d, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    quiet = [i for i in range(len(tok)) if not re.fullmatch(r" [A-Za-z]{2,}", tok.decode([i]))]
    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        m.get_input_embeddings().weight[quiet] = 0
    m.save_pretrained(d, safe_serialization=True)
    return d


def test_drafts_meet_their_final_reports(tmp_path, wordy_model_dir, spark, ray_local):
    from radgpt import table
    from radgpt.draft.run import run_draft
    from radgpt.ingest.run import run_ingest
    from radgpt.loop.outcomes import read_outcomes, run_outcomes
    from radgpt.model.labeler import POS, label
    from radgpt.writeback.drafts import read_drafts

    def cfg_for(night):
        sets = {"paths.root": str(tmp_path / "var"), "ingest.inputs": [str(night)],
                "model.base": str(wordy_model_dir), "model.adapter": None,
                "draft.max_new_tokens": 12, "draft.cpus_per_actor": 1}  # fmt: skip
        return load_config(None, sets, env={})

    # night 1: four HL7 orders and one FHIR report, preliminary, without an Impression
    accs = [f"ACC{k}" for k in range(4)]
    night1 = write_night(
        tmp_path / "night1",
        [hl7_message(k, accs[k], FINDINGS[k], None, "P", "20260101090000") for k in range(4)],
        [fhir_report("dr-prelim", "ACC-F", FINDINGS[4], None, "preliminary")],
    )
    cfg = cfg_for(night1)
    m1 = run_ingest(cfg, spark=spark)
    assert m1["counts"]["totals"]["new"] == 5 and m1["counts"]["totals"]["corrected"] == 0
    s = run_draft(cfg)
    assert s["selected"] == s["committed"] == 5
    drafts = {r["report_id"]: r for r in read_drafts(cfg.path("drafts")).to_pylist()}
    ids = sorted(drafts)  # fhir:dr-prelim, hl7:ACC0 .. hl7:ACC3
    said = {rid: words(d["draft"]) for rid, d in drafts.items()}
    assert all(len(said[r]) >= 3 for r in ids[1:4]), said  # the tiny model says something

    # night 2: the radiologists sign. ACC0 as drafted, ACC1 edited, ACC2 replaced, ACC3 not yet;
    # the FHIR study comes back as a new DiagnosticReport with the same accession
    edited = said["hl7:ACC1"][:-1] + ["no", "pneumothorax"]
    finals = {
        0: " ".join(said["hl7:ACC0"]) + ".",
        1: " ".join(edited) + ".",
        2: "Right lower lobe consolidation.",
    }
    night2 = write_night(
        tmp_path / "night2",
        [hl7_message(k, accs[k], FINDINGS[k], finals[k], "F", "20260102090000") for k in finals],
        [
            fhir_report(
                "dr-final", "ACC-F", FINDINGS[4], "No acute cardiopulmonary process.", "final"
            )
        ],
    )
    cfg = cfg_for(night2)
    m2 = run_ingest(cfg, spark=spark)
    t2 = m2["counts"]["totals"]
    assert (t2["new"], t2["corrected"], t2["already_ingested"]) == (
        1,
        3,
        0,
    )  # the FHIR final is new
    every = table.read_reports(cfg, all_versions=True).to_pylist()
    rev = [r for r in every if (r["version"] or 1) > 1]  # the signed HL7 reports: version 2
    first = {r["report_id"]: r for r in every if (r["version"] or 1) == 1}
    assert sorted(r["report_id"] for r in rev) == ["hl7:ACC0", "hl7:ACC1", "hl7:ACC2"]
    assert all(r["status"] == "F" and r["eligible"] and r["version"] == 2 for r in rev)
    assert all(r["supersedes"] == first[r["report_id"]]["source_sha256"] for r in rev)
    assert all(r["split"] == first[r["report_id"]]["split"] for r in rev)  # same report, same split
    assert first["hl7:ACC0"]["status"] == "P" and first["hl7:ACC0"]["impression"] is None
    current = {r["report_id"]: r for r in table.read_reports(cfg).to_pylist()}
    assert current["hl7:ACC0"]["status"] == "F" and current["hl7:ACC3"]["status"] == "P"
    again = run_ingest(cfg, spark=spark)["counts"]["totals"]  # the same files: skipped unread
    assert (again["new"], again["corrected"], again["seen"]) == (0, 0, 0) and again[
        "skipped_inputs"
    ]
    full = cfg.model_copy(
        update={"ingest": cfg.ingest.model_copy(update={"skip_unchanged": False})}
    )
    again = run_ingest(full, spark=spark)["counts"]["totals"]  # read again: nothing new
    assert (again["new"], again["corrected"], again["already_ingested"]) == (0, 0, 4)

    out = run_outcomes(cfg)
    assert out["linked"] == 4 and out["awaiting_final"] == 1
    assert out["counts"] == {"accepted": 1, "edited": 1, "replaced": 2}, out
    o = {r["report_id"]: r for r in read_outcomes(cfg.path("outcomes")).to_pylist()}
    assert set(o) == {"hl7:ACC0", "hl7:ACC1", "hl7:ACC2", "fhir:dr-prelim"}
    assert (o["hl7:ACC0"]["outcome"], o["hl7:ACC0"]["edit_distance"]) == ("accepted", 0)
    assert o["hl7:ACC1"]["outcome"] == "edited" and 0 < o["hl7:ACC1"]["edit_distance"] < 0.7
    assert (
        o["hl7:ACC2"]["outcome"] == "replaced"
        and "Consolidation" in o["hl7:ACC2"]["findings_added"]
    )
    normal = label(drafts["hl7:ACC2"]["draft"])["No Finding"] == POS  # the draft reads normal
    assert o["hl7:ACC2"]["dangerous_miss"] is normal
    assert {r["link"] for r in o.values()} == {"report_id", "accession"}
    assert o["fhir:dr-prelim"]["final_report_id"] == "fhir:dr-final"
    assert all(r["final_ingest_run_id"] == m2["run_id"] for r in o.values())
    assert all(r["draft_id"] == drafts[k]["draft_id"] for k, r in o.items())
    assert run_outcomes(cfg)["linked"] == 0  # idempotent: a draft keeps its outcome
    assert len(read_outcomes(cfg.path("outcomes"))) == 4

    t = read_outcomes(cfg.path("outcomes"))
    (night,) = rates(t, "night")
    assert night["n"] == 4 and night["accepted_rate"] == 0.25 and night["replaced_rate"] == 0.5
    assert [r["adapter"] for r in rates(t, "adapter")] == ["base"]
    by_flag = rates(t, "flag")
    assert sum(r["n"] for r in by_flag) >= 4 and all(r["flag"] for r in by_flag)
    text = json.dumps(out) + json.dumps(t.to_pylist(), default=str)
    assert "consolidation." not in text.lower()  # no report text in outcomes or summaries


@pytest.mark.parametrize("as_json", [True, False])
def test_stats_outcomes_command(tmp_path, capsys, as_json):
    from radgpt.cli import main
    from radgpt.loop.outcomes import commit
    from radgpt.runtime import utcnow

    now = utcnow()
    rows = [{"draft_id": f"d{i}", "report_id": f"r{i}", "final_report_id": f"r{i}",
             "link": "report_id", "final_status": "F", "final_ingest_run_id": "ingest-2",
             "final_ingested_at": now, "generated_at": now, "adapter_id": "lora-a",
             "adapter_version": "models:/radgpt-impression/2" if i % 2 else None,
             "flags": ["truncated"] if i < 2 else [], "outcome": o, "edit_distance": d,
             "draft_words": 5, "final_words": 5, "findings_added": [], "findings_removed": [],
             "dangerous_miss": False, "outcome_run_id": "outcomes-1", "linked_at": now,
             "code_version": "x", "run_date": "2026-01-0" + str(1 + i // 2)}
            for i, (o, d) in enumerate([("edited", 0.4), ("replaced", 0.9), ("accepted", 0.0),
                                        ("accepted", 0.0)])]  # fmt: skip
    commit(rows, tmp_path / "outcomes", "outcomes-1")
    argv = ["stats", "--set", f"paths.root={tmp_path}", "--outcomes"]
    assert main(argv + (["--json"] if as_json else [])) == 0
    out = capsys.readouterr().out
    if not as_json:
        assert "by flag" in out and "truncated" in out and "(none)" in out
        return
    got = json.loads(out)
    flag = {r["flag"]: r for r in got["by_flag"]}
    assert flag["truncated"]["n"] == 2 and flag["truncated"]["accepted_rate"] == 0
    assert flag["(none)"]["accepted_rate"] == 1.0  # unflagged drafts were taken as they were
    assert [r["night"] for r in got["by_night"]] == ["2026-01-01", "2026-01-02"]
    assert {r["adapter"] for r in got["by_adapter"]} == {
        "lora-a", "lora-a (models:/radgpt-impression/2)"
    }  # fmt: skip
