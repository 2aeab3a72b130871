"""Report versions end to end on a real SparkSession: a second export where one report per format
was corrected (new text), others are byte-identical or only say `corrected`; the current view,
kept splits, draft selection, training reads and a table written before versions existed."""

import base64
import csv
import io
import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from radgpt import table
from radgpt.config import load_config
from radgpt.ingest.run import run_ingest
from radgpt.model.ids import text_sha256
from radgpt.model.spec import ModelSpec
from radgpt.sample.csvx import csv_text

N = 12  # reports per format
FORMATS = ("csv", "hl7", "fhir")
NEW_FINDINGS = "There is a large right {} tension pneumothorax with leftward mediastinal shift now."
NEW_IMPRESSION = "Large right tension pneumothorax."


def cfg_for(root, src):
    inputs = [str(src / f) for f in FORMATS]
    return load_config(None, {"paths.root": str(root), "ingest.inputs": inputs}, env={})


def csv_edit(path, changed: str) -> None:
    """The CSV export again, row uid `changed` with new Findings and Impression."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    for r in rows[1:]:
        if f"csv:{r[0]}" == changed:
            r[6], r[7] = NEW_FINDINGS.format("csv"), NEW_IMPRESSION
    text = csv_text(rows[1:])
    assert text.count("\n") == path.read_text().count("\n")  # the other rows byte for byte
    path.write_text(text)


def hl7_edit(path, changed: str, says: str) -> None:
    """Message `changed`: new text, OBR-25 C; message `says`: OBR-25 C, same text."""
    msgs = path.read_bytes().decode().split("\n")
    out = []
    for m in msgs:
        segs = m.split("\r")
        obr = next((s.split("|") for s in segs if s.startswith("OBR|")), None)
        rid = f"hl7:{obr[3].split('^')[0]}" if obr else None
        if rid in (changed, says):
            obr[25] = "C"
            segs = ["|".join(obr) if s.startswith("OBR|") else s for s in segs]
        if rid == changed:
            head = [s for s in segs if s and not s.startswith("OBX|")]
            new = [f"FINDINGS: {NEW_FINDINGS.format('hl7')}", f"IMPRESSION: {NEW_IMPRESSION}"]
            obx = [f"OBX|{j + 1}|TX|18782-3^Study^LN|1|{t}||||||C" for j, t in enumerate(new)]
            segs = [*head, *obx, ""]
        out.append("\r".join(segs))
    path.write_bytes("\n".join(out).encode())


def fhir_edit(path, changed: str, says: str) -> None:
    """Resource `changed`: new text, status amended; resource `says`: status corrected only."""
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        res = json.loads(line)
        rid = f"fhir:{res.get('id')}"
        if rid == says:
            res["status"] = "corrected"
        elif rid == changed:
            for k in ("text", "presentedForm", "conclusion"):
                res.pop(k, None)
            body = f"FINDINGS: {NEW_FINDINGS.format('fhir')}\nIMPRESSION: {NEW_IMPRESSION}"
            data = base64.b64encode(body.encode()).decode()
            res["presentedForm"] = [{"contentType": "text/plain", "data": data}]
            res["status"] = "amended"
        else:
            continue
        lines[i] = json.dumps(res, separators=(",", ":"))
    path.write_text("\n".join(lines))


@pytest.fixture(scope="module")
def nights(spark, tmp_path_factory):
    """Night 1 ingests a CSV, HL7 and FHIR export; night 2 the same exports, where one eligible
    report per format was corrected and one HL7 and one FHIR report only say corrected. A copy of
    the night-1 table, rewritten without the version columns, is the legacy table."""
    from radgpt.sample.write import write_sample

    base = tmp_path_factory.mktemp("versions")
    one = base / "export-1"
    write_sample(one, n=N, seed=5, bad=False)
    cfg = cfg_for(base / "var", one)
    m1 = run_ingest(cfg, spark=spark)
    t1 = table.read_reports(cfg, all_versions=True)
    elig = t1.filter(t1["eligible"]).sort_by("report_id")
    pick = {}
    for fmt in FORMATS:
        ids = [r for r in elig["report_id"].to_pylist() if r.startswith(f"{fmt}:")]
        pick[fmt] = (ids[0], ids[1])  # (changed, says corrected)
    legacy = base / "legacy"
    shutil.copytree(cfg.path("table"), legacy)
    for f in table.committed_files(legacy):  # as an ingest before version 3 of the contract wrote
        pq.write_table(
            pq.ParquetFile(f).read().drop_columns(["content_sha256", "version", "supersedes"]), f
        )
    two = base / "export-2"
    shutil.copytree(one, two)
    csv_edit(two / "csv" / "reports.csv", pick["csv"][0])
    hl7_edit(two / "hl7" / "oru.hl7", *pick["hl7"])
    fhir_edit(two / "fhir" / "diagnosticreports.ndjson", *pick["fhir"])
    cfg2 = cfg_for(base / "var", two)
    m2 = run_ingest(cfg2, spark=spark)
    return {"cfg": cfg2, "m1": m1, "m2": m2, "t1": t1, "pick": pick, "legacy": legacy, "two": two}


def test_corrected_reports_are_new_versions(nights):
    m1, m2, t1, pick = nights["m1"], nights["m2"], nights["t1"], nights["pick"]
    n = m1["counts"]["totals"]["new"]
    tot = m2["counts"]["totals"]
    assert (tot["new"], tot["corrected"], tot["already_ingested"]) == (0, 3, n - 3)
    assert tot["eligible"] + tot["excluded"] == 3
    # the sources' statuses, by outcome: HL7 C / FHIR amended with new text, and the two reports
    # whose status says corrected over the same text (kept as already ingested)
    assert m2["counts"]["status_corrected"] == {"already_ingested": 2, "corrected": 2}
    csv = m2["counts"]["by_source"]["csv"]
    assert (csv["new"], csv["corrected"], csv["eligible"]) == (0, 1, 1)
    assert csv["seen"] == csv["corrected"] + csv["already_ingested"] + csv["quarantined"]
    every = table.read_reports(nights["cfg"], all_versions=True)
    assert every.num_rows == n + 3  # the old rows stay, for audit
    first = {r["report_id"]: r for r in t1.to_pylist()}
    for fmt, (changed, says) in pick.items():
        rows = sorted(
            (r for r in every.to_pylist() if r["report_id"] == changed), key=lambda r: r["version"]
        )
        old, new = rows
        assert (old["version"], new["version"]) == (1, 2)
        assert new["supersedes"] == old["source_sha256"] == first[changed]["source_sha256"]
        assert old["findings"] == first[changed]["findings"]  # untouched
        assert new["findings"] == NEW_FINDINGS.format(fmt) and new["impression"] == NEW_IMPRESSION
        assert (new["split"], new["split_origin"]) == (old["split"], old["split_origin"])
        assert new["content_sha256"] != old["content_sha256"]
        assert sum(r["report_id"] == says for r in every.to_pylist()) == 1
    assert {r["status"] for r in every.to_pylist() if r["version"] == 2} == {"C", "amended", None}


def test_current_view_has_one_row_per_report_the_latest(nights):
    cfg, pick = nights["cfg"], nights["pick"]
    cur = table.read_reports(cfg)
    ids = cur["report_id"].to_pylist()
    assert len(ids) == len(set(ids)) == nights["m1"]["counts"]["totals"]["new"]
    by_id = {r["report_id"]: r for r in cur.to_pylist()}
    for fmt, (changed, _) in pick.items():
        assert by_id[changed]["findings"] == NEW_FINDINGS.format(fmt)
        assert by_id[changed]["version"] == 2
    # columns and filters apply to the current view (an old version never stands in)
    few = table.read_reports(cfg, ["findings"], filter=pc.field("source") == "csv")
    assert few.column_names == ["findings"]
    assert NEW_FINDINGS.format("csv") in few["findings"].to_pylist()
    old = nights["t1"]
    before = old.filter(pc.equal(old["report_id"], pick["csv"][0]))["findings"][0].as_py()
    assert before not in few["findings"].to_pylist()


def test_printed_summary_shows_corrected(nights, capsys):
    from radgpt.cli.ingest import print_summary

    print_summary(nights["m2"])
    out = capsys.readouterr().out
    assert "'corrected': 3" in out and "status corrected:" in out


def spec() -> ModelSpec:
    return ModelSpec(
        base_model="base", base_model_sha256="0" * 64, adapter_dir=None, adapter_id="lora-x",
        model_key="lora-x", prompt_name="chat-v1", prompt_version="1", task="impression",
        cutoff_len=128, eos_token_id=None, retrieval_k=0, retrieval_table="", retrieval_digest=None,
        generation='{"do_sample":false}',
    )  # fmt: skip


def test_draft_selection_picks_the_corrected_report_with_a_new_draft_id(nights):
    from radgpt.draft.run import select

    cfg, pick, s = nights["cfg"], nights["pick"], spec()
    cfg.draft.selection = "new"
    before = select(nights["t1"], cfg, s)  # night 1's table: every report a first version
    done = set(before["draft_id"].to_pylist())  # all drafted on night 1
    after = select(table.read_reports(cfg), cfg, s, done)
    changed = sorted(c for c, _ in pick.values())
    assert sorted(after["report_id"].to_pylist()) == changed
    assert not set(after["draft_id"].to_pylist()) & done
    row = {r["report_id"]: r for r in after.to_pylist()}
    for rid in changed:
        assert row[rid]["draft_id"] == s.draft_id(rid, 2, row[rid]["findings"])
        assert row[rid]["draft_id"] != s.draft_id(rid)
    # everything else keeps its draft id: nothing new to draft for those
    again = select(table.read_reports(cfg), cfg, s)
    olds = dict(zip(before["report_id"].to_pylist(), before["draft_id"].to_pylist(), strict=True))
    kept = {r: d for r, d in zip(again["report_id"].to_pylist(), again["draft_id"].to_pylist(),
                                 strict=True) if r not in changed}  # fmt: skip
    assert kept == {r: d for r, d in olds.items() if r not in changed}


def test_evaluation_scores_drafts_of_the_current_findings_only():
    import pandas as pd

    from radgpt.evaluation.run import join

    refs = pd.DataFrame({"report_id": ["a", "b"], "findings": ["new text", "same"],
                         "reference": ["r1", "r2"], "version": [2, None]})  # fmt: skip
    drafts = pd.DataFrame({"report_id": ["a", "b"], "system": ["draft"] * 2, "draft": ["d1", "d2"],
                           "findings_sha256": [text_sha256("old text"), "x"]})  # fmt: skip
    frame, _ = join(refs, drafts)
    assert frame["report_id"].tolist() == ["b"]  # a's draft was made from its old Findings
    drafts.loc[0, "findings_sha256"] = text_sha256("new text")
    assert join(refs, drafts)[0]["report_id"].tolist() == ["a", "b"]


def test_training_reads_the_latest_version(nights, ray_local):
    from radgpt.train.data import read_split

    cfg, pick = nights["cfg"], nights["pick"]
    root = cfg.path("table")
    cur = table.read_reports(cfg)
    got = []
    for split in ("train", "validate", "test"):
        got += read_split(root, split).take_all()
    ids = [r["report_id"] for r in got]
    assert len(ids) == len(set(ids)) == pc.sum(cur["eligible"]).as_py()
    by_id = {r["report_id"]: r for r in got}
    for fmt, (changed, _) in pick.items():
        assert by_id[changed]["findings"] == NEW_FINDINGS.format(fmt)


def test_a_table_written_before_versions_reads_and_takes_corrections(nights, spark, tmp_path):
    legacy = nights["legacy"]
    assert "version" not in pq.read_schema(table.committed_files(legacy)[0]).names
    t = table.read_reports(legacy)
    assert t.num_rows == nights["t1"].num_rows and t["version"].null_count == t.num_rows
    assert table.read_reports(legacy, all_versions=True).num_rows == t.num_rows
    cfg = load_config(
        None,
        {"paths.root": str(tmp_path), "paths.table": str(legacy),
         "ingest.inputs": [str(nights["two"] / f) for f in FORMATS]},
        env={},
    )  # fmt: skip
    m = run_ingest(cfg, spark=spark)
    # without content_sha256 in the old rows, changed Findings/Impression (pair_sha256) decide
    tot = m["counts"]["totals"]
    assert (tot["new"], tot["corrected"]) == (0, 3)
    assert m["counts"]["status_corrected"] == {"already_ingested": 2, "corrected": 2}
    every = table.read_reports(cfg, all_versions=True)
    assert every.num_rows == t.num_rows + 3
    v2 = every.filter(pc.equal(every["version"], pa.scalar(2, pa.int32())))
    assert sorted(v2["report_id"].to_pylist()) == sorted(c for c, _ in nights["pick"].values())
    assert table.read_reports(cfg).num_rows == t.num_rows
