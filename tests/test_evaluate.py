"""`radgpt evaluate` end to end on real committed tables (radgpt.table + radgpt.writeback.fhir).

.venv/bin/pytest tests/test_evaluate.py -q
"""

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radgpt import table
from radgpt.cli import main
from radgpt.evaluation.run import join, select_drafts, select_refs
from radgpt.schema import arrow_schema
from radgpt.writeback.drafts import commit_drafts, read_drafts

NOW = dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
NORMAL = "No acute cardiopulmonary abnormality."
# (findings, impression); the first 10 are train, then 2 validate, then 6 test
PAIRS = [
    ("The heart is normal in size. The lungs are clear. No effusion or pneumothorax.", NORMAL),
    ("Heart size normal. Lungs clear without focal consolidation. No pleural effusion.", NORMAL),
    ("Normal cardiomediastinal silhouette. Clear lungs. No pneumothorax is seen here.", NORMAL),
    ("The heart is enlarged. Small bilateral pleural effusions. No pneumothorax seen.",
     "Cardiomegaly with small bilateral pleural effusions."),
    ("Right lower lobe airspace consolidation. Heart size normal. No effusion present.",
     "Right lower lobe pneumonia."),
    ("Large right apical pneumothorax with mediastinal shift. The heart is normal in size.",
     "Large right pneumothorax."),
    ("Left basilar opacity likely atelectasis. No effusion. The heart size is normal today.",
     "Left basilar atelectasis."),
    ("Lungs are clear. Heart is normal. Healed left rib fractures are noted on this exam.",
     "No acute disease. Old left rib fractures."),
    ("Endotracheal tube tip 4 cm above the carina. The lungs are clear. No effusion seen.",
     "Endotracheal tube in good position."),
    ("The lungs are clear bilaterally. No effusion. No pneumothorax. Heart size is normal.", NORMAL),
    ("Mild cardiomegaly. No focal consolidation. No effusion or pneumothorax is present.",
     "Mild cardiomegaly."),
    ("Heart normal. Lungs clear. No pneumothorax or pleural effusion seen on these views.", NORMAL),
    ("The heart is enlarged. Moderate left pleural effusion. No pneumothorax is present.",
     "Cardiomegaly and moderate left pleural effusion."),
    ("Right upper lobe consolidation and air bronchograms. Heart size normal. No effusion.",
     "Right upper lobe pneumonia."),
    ("Small left apical pneumothorax. Heart size is normal. Lungs otherwise clear today.",
     "Small left pneumothorax."),
    ("Heart is normal in size. Lungs are clear. No effusion or pneumothorax is seen here.", NORMAL),
    ("Bibasilar opacities likely atelectasis. The heart is normal. No effusion is present.",
     "Bibasilar atelectasis."),
    ("Large right pleural effusion with compressive atelectasis. Heart size is normal here.",
     "Large right pleural effusion."),
]  # fmt: skip
SPLITS = ["train"] * 10 + ["validate"] * 2 + ["test"] * 6
# drafts for the test reports: two good, one normal-reading miss, three partly right
DRAFTS = [
    "Cardiomegaly and moderate left pleural effusion.",
    "Right upper lobe pneumonia.",
    NORMAL,  # reference: small left pneumothorax -> a dangerous miss
    "No acute cardiopulmonary abnormality.",
    "Bibasilar atelectasis versus pneumonia.",
    "Right pleural effusion.",
]


def report_rows(sources=("openi",)):
    rows = []
    for i, ((f, imp), sp) in enumerate(zip(PAIRS, SPLITS, strict=True)):
        src = sources[i % len(sources)]
        rows.append({
            "report_id": f"{src}:{i}", "source": src, "source_uri": "/in/x", "source_member": str(i),
            "source_sha256": f"{i:064x}", "native_id": str(i), "patient_id": None, "study_id": None,
            "exam_time": None, "exam": "CHEST 2V", "status": "final",
            "sections": [("findings", f), ("impression", imp)], "findings": f, "impression": imp,
            "findings_words": len(f.split()), "impression_words": len(imp.split()),
            "pair_sha256": f"{i + 100:064x}", "eligible": True, "exclusion_reason": None,
            "split": sp, "split_origin": "random", "ingest_run_id": "ingest-test", "ingested_at": NOW,
        })  # fmt: skip
    # an ineligible test report (no impression) is never scored
    rows.append({**rows[-1], "report_id": f"{sources[0]}:99", "impression": None,
                 "eligible": False, "exclusion_reason": "no_impression"})  # fmt: skip
    return rows


def write_reports(root, rows, run_id="ingest-test"):
    t = pa.Table.from_pylist(rows, schema=arrow_schema("reports"))
    pq.write_to_dataset(t, table.staging_dir(root, run_id), partition_cols=["source", "split"])
    return table.commit(root, run_id, {"kind": "reports", "rows": len(rows)})


def draft_rows(report_ids, drafts, run_id="draft-test", adapter="adapter-a", at=NOW):
    return [
        {
            "draft_id": f"{run_id}-{adapter}-{rid}", "report_id": rid, "source": rid.split(":")[0],
            "patient_id": None, "study_id": None, "draft": d, "flags": [],
            "base_model": "/models/tiny", "base_model_sha256": "ab" * 32, "adapter_id": adapter,
            "prompt_name": "chat-v1", "prompt_version": "1", "generation": '{"do_sample":false}',
            "source_sha256": "0" * 64, "findings_sha256": "1" * 64, "run_id": run_id,
            "code_version": "radgpt test", "worker_host": "localhost", "generated_at": at,
            "prompt_tokens": 50, "output_tokens": 8, "latency_ms": 12.5, "run_date": at.date().isoformat(),
        }
        for rid, d in zip(report_ids, drafts, strict=True)
    ]  # fmt: skip


@pytest.fixture
def tables(tmp_path):
    """A committed reports table (2 sources) and a committed drafts table for its test split."""
    data, drafts = tmp_path / "table", tmp_path / "drafts"
    rows = report_rows(sources=("openi", "mimic"))
    write_reports(data, rows)
    test_ids = [r["report_id"] for r in rows if r["split"] == "test" and r["eligible"]]
    commit_drafts(draft_rows(test_ids, DRAFTS), drafts, "draft-test")
    return data, drafts, test_ids


def test_select_and_join(tables):
    data, drafts, test_ids = tables
    refs = select_refs(table.read_reports(data), ["test"])
    assert sorted(refs["report_id"]) == sorted(test_ids)  # the ineligible one is gone
    d = read_drafts(drafts)
    # a later run of the same adapter replaces a draft; a second adapter becomes its own system
    later = NOW + dt.timedelta(days=1)
    d2 = pa.concat_tables([
        d,
        pa.Table.from_pylist(draft_rows(test_ids[:1], ["Later draft."], "draft-2", at=later),
                             schema=arrow_schema("drafts")),
        pa.Table.from_pylist(draft_rows(test_ids[:2], ["x", "y"], "draft-3", adapter="adapter-b"),
                             schema=arrow_schema("drafts")),
    ])  # fmt: skip
    sel = select_drafts(d2)
    assert sorted(sel["system"].unique()) == ["draft:adapter-a", "draft:adapter-b"]
    a = sel[sel["system"] == "draft:adapter-a"].set_index("report_id")
    assert a.loc[test_ids[0], "draft"] == "Later draft." and len(a) == 6
    frame, systems = join(refs, sel)
    assert systems == ["draft:adapter-a", "draft:adapter-b"]
    assert len(frame) == 2  # only reports that every draft system covers
    only_b = select_drafts(d2, adapter_id="adapter-b")
    assert only_b["system"].unique().tolist() == ["draft"]
    assert len(select_drafts(d2, run_ids=["draft-test"])) == 6


def test_evaluate_cli_writes_report(tables, tmp_path, capsys):
    data, drafts, test_ids = tables
    out = tmp_path / "eval"
    rc = main(["evaluate", "--drafts", str(drafts), "--data", str(data), "--split", "test",
               "--baselines", "constant,nn", "--out", str(out), "--set", "eval.bootstrap=200"])  # fmt: skip
    assert rc == 0
    assert "ROUGE-1" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and set(m["systems"]) == {"draft", "constant", "nn"}
    for f in m["files"]:
        assert (out / f).stat().st_size > 0
    assert (out / "rouge.png").read_bytes()[:4] == b"\x89PNG"
    # constant = the majority train impression, which matches exactly one test reference
    c = m["systems"]["constant"]["rouge"]["rouge1"]
    assert c["lo"] <= c["mean"] <= c["hi"]
    d = m["systems"]["draft"]
    assert d["rouge"]["rouge1"]["mean"] > c["mean"]
    # draft 3 reads normal where the reference has a pneumothorax: one dangerous miss
    assert d["findings"]["dangerous_miss_reports"] == 1
    assert d["findings"]["per_observation"]["Pneumothorax"]["fn"] == 1
    assert m["systems"]["constant"]["findings"]["dangerous_miss_reports"] == 5
    assert d["length"]["mean"] > 0 and m["reference"]["length"]["n"] == 6
    # provenance and breakdowns
    assert m["evaluated"]["drafts"]["run_ids"] == {"draft-test": 6}
    assert m["evaluated"]["drafts"]["adapter_ids"] == ["adapter-a"]
    assert m["evaluated"]["data"]["ingest_runs"] == ["ingest-test"]
    assert len(m["evaluated"]["data"]["snapshot_sha256"]) == 64
    assert set(m["by_source"]) == {"openi", "mimic"} and set(m["by_split"]) == {"test"}
    assert sum(v["n"] for v in m["by_source"].values()) == 6
    assert {(p["a"], p["b"]) for p in m["paired"]} == {("draft", "constant"), ("draft", "nn")}
    assert [a["rouge1"] for a in m["anchors"]] == [0.4834, 0.4185]
    md = (out / "summary.md").read_text()
    assert "DIFFERENT test sets" in md and "0.4834" in md and "draft-test" in md
    html = (out / "report.html").read_text()
    assert "<img src='rouge.png'" in html and "OpenI" in html
    # no report text in the metrics (ids and numbers only)
    text = (out / "metrics.json").read_text().lower()
    assert "bronchograms" not in text and "moderate left pleural" not in text
    assert "report_id,system,rouge1" in (out / "per_report.csv").read_text()


def test_evaluate_all_splits_and_errors(tables, tmp_path):
    data, drafts, _ = tables
    out = tmp_path / "e2"
    assert main(["evaluate", "--drafts", str(drafts), "--data", str(data), "--split", "all",
                 "--baselines", "none", "--out", str(out), "--set", "eval.bootstrap=50"]) == 0  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["systems"]) == ["draft"] and m["paired"] == []
    assert m["coverage"]["references_without_draft"] == 12
    from radgpt.config import load_config
    from radgpt.evaluation.run import run_evaluate

    def cfg(drafts, **sets):
        paths = {"paths.drafts": str(drafts), "paths.table": str(data)}
        return load_config(overrides={"eval.bootstrap": 50, **paths, **sets})

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no committed drafts"):
        run_evaluate(cfg(tmp_path / "empty"), out=tmp_path / "e3")
    with pytest.raises(FileNotFoundError, match="radgpt draft"):
        run_evaluate(cfg(tmp_path / "none"), out=tmp_path / "e3")
    # the CLI turns bad input into a message and exit code 2
    assert main(["evaluate", "--drafts", str(drafts), "--data", str(data), "--split", "validate",
                 "--out", str(tmp_path / "e6")]) == 2  # fmt: skip
    with pytest.raises(ValueError, match="none of the 6 drafts"):
        run_evaluate(cfg(drafts), split="validate", out=tmp_path / "e4")
    with pytest.raises(ValueError, match="unknown baseline"):
        run_evaluate(cfg(drafts, **{"eval.baselines": ["oracle"]}), out=tmp_path / "e5")


def test_evaluate_with_zero_shot_baseline(tables, tmp_path, tiny_model_dir):
    data, drafts, _ = tables
    out = tmp_path / "zs"
    rc = main(["evaluate", "--drafts", str(drafts), "--data", str(data), "--baselines", "zero-shot",
               "--out", str(out), "--set", f"model.base={tiny_model_dir}",
               "--set", "draft.max_new_tokens=4", "--set", "eval.bootstrap=50"])  # fmt: skip
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["systems"]) == {"draft", "zero-shot"} and m["baselines"] == ["zero-shot"]
    zs = m["systems"]["zero-shot"]
    assert zs["rouge"]["rouge1"]["n"] == 6 and zs["length"]["n"] == 6


def test_evaluate_reports_carry_and_silent_misses(tmp_path):
    """Stored flags for the drafts, flags computed the drafting way for baselines; by hand:
    test pairs with a pathology in Findings AND reference: 12 (cardiomegaly, effusion), 14
    (pneumothorax), 17 (effusion); the drafts state 3 of the 4, and miss 14 (reads normal)."""
    data, drafts = tmp_path / "table", tmp_path / "drafts"
    rows = report_rows()
    write_reports(data, rows)
    test_ids = [r["report_id"] for r in rows if r["split"] == "test" and r["eligible"]]
    d = draft_rows(test_ids, DRAFTS)
    d[2] |= {"flags": ["omits_finding"], "flag_observations": ["omits_finding:Pneumothorax"]}
    commit_drafts(d, drafts, "draft-test")
    out = tmp_path / "eval"
    # carry rates of this table's train split (no adapter: the shipped one carries its own)
    assert main(["evaluate", "--drafts", str(drafts), "--data", str(data), "--baselines",
                 "constant", "--out", str(out), "--set", "eval.bootstrap=50",
                 "--set", "model.adapter=null"]) == 0  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    s = m["systems"]["draft"]["safety"]
    assert s["carry"] == {"both": 4, "carried": 3, "rate": 0.75}
    assert s["dangerous_misses"] == {"reports": 1, "silent": 0, "silent_share": 0.0}
    assert (s["flags"]["flagged"], s["flags"]["precision"], s["flags"]["omits_precision"]) == (
        1,
        1.0,
        1.0,
    )
    assert s["per_observation"]["Pneumothorax"]["omits_right"] == 1
    # constant reads normal for all 6: 5 dangerous misses; train carries cardiomegaly, effusion,
    # pneumothorax (rate 2/3 >= 0.4), and consolidation and opacity as their readings pneumonia
    # and atelectasis (labeler.SUPPORT: 2/3): the misses on 13 and 16 are flagged too
    c = m["systems"]["constant"]["safety"]
    assert c["dangerous_misses"] == {"reports": 5, "silent": 0, "silent_share": 0.0}
    assert c["carry"]["carried"] == 0 and c["flags"]["by_flag"] == {"omits_finding": 5}
    assert m["review_flags"]["carry_threshold"] == 0.4
    assert {"Pneumothorax", "Consolidation", "Lung Opacity"} <= set(m["review_flags"]["usual"])
    # the threshold sweep recomputes the drafts' consistency flags: pneumothorax (2/3) is checked
    # up to 0.6, so report 14's miss is flagged there and silent from 0.7 on
    sw = {r["threshold"]: r for r in m["carry_sweep"]["draft"]["rows"]}
    assert (sw[0.5]["silent_dangerous"], sw[0.6]["silent_dangerous"]) == (0, 0)
    assert (sw[0.7]["silent_dangerous"], sw[0.8]["dangerous_misses"]) == (1, 1)
    assert [sw[t]["flagged"] for t in sorted(sw)] == sorted(
        (sw[t]["flagged"] for t in sorted(sw)), reverse=True
    )  # fewer observations checked, never more flags
    md = (out / "summary.md").read_text()
    assert "Silent misses and review flags" in md and "0.750 (3/4)" in md
    assert "draft: draft.carry_threshold sweep" in md
    assert (out / "safety.png").read_bytes()[:4] == b"\x89PNG"
    assert "<img src='safety.png'" in (out / "report.html").read_text()
