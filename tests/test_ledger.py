"""Incremental nights on a real local SparkSession (issue 18): the input ledger in the table's
manifests skips inputs committed unchanged without parsing them, reads new and changed ones (the
report-versioning rules), marks nothing done that was not committed, and `--full` reads all; the
table afterwards is the table of a full re-ingest."""

import csv
import io
import shutil

import pyarrow.compute as pc
import pytest

import radgpt.cluster
from radgpt import table
from radgpt.cli import build_parser, config
from radgpt.cli.ingest import flags
from radgpt.config import load_config
from radgpt.ingest import ledger
from radgpt.ingest.run import quarantine_root, run_ingest
from radgpt.sample.csvx import csv_text

N = 12  # reports per format
NEW_FINDINGS = "There is a large right tension pneumothorax with leftward mediastinal shift now."


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A CSV, an HL7 and a FHIR NDJSON export (clean: no repeated ids, nothing cut short)."""
    from radgpt.sample.write import write_sample

    out = tmp_path_factory.mktemp("exports")
    write_sample(out, n=N, seed=7, bad=False)
    return {"csv": out / "csv" / "reports.csv", "hl7": out / "hl7" / "oru.hl7",
            "fhir": out / "fhir" / "diagnosticreports.ndjson"}  # fmt: skip


def incoming(tmp_path, exports, *fmts):
    """The folder a RIS interface drops exports into, holding these formats' files."""
    d = tmp_path / "incoming"
    d.mkdir(parents=True, exist_ok=True)
    for f in fmts:
        if not (d / exports[f].name).exists():
            shutil.copy2(exports[f], d / exports[f].name)
    return d


def cfg_for(root, *inputs, **sets):
    sets = {"paths.root": str(root), "ingest.inputs": [str(p) for p in inputs], **sets}
    return load_config(None, sets, env={})


def correct_one(path) -> str:
    """Rewrite the CSV export with the first eligible-looking row's Findings changed (a corrected
    report); returns its report id."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    row = next(r for r in rows[1:] if len(r[6].split()) >= 10 and len(r[7].split()) >= 2)
    row[6] = NEW_FINDINGS
    path.write_text(csv_text(rows[1:]))
    return f"csv:{row[0]}"


def no_spark(cfg):
    raise AssertionError("a night with nothing to read started Spark")


def test_a_second_night_on_the_same_inputs_parses_nothing(spark, exports, tmp_path, monkeypatch):
    src = incoming(tmp_path, exports, "csv", "hl7", "fhir")
    cfg = cfg_for(tmp_path / "var", src)
    m1 = run_ingest(cfg, spark=spark)
    assert m1["counts"]["totals"]["skipped_inputs"] == 0
    assert [i["done"] and i["committed_by"] for i in m1["inputs"]] == [m1["run_id"]] * 3
    before = table.read_reports(cfg, all_versions=True)
    monkeypatch.setattr(radgpt.cluster, "spark_session", no_spark)
    m2 = run_ingest(cfg)  # no session given: one would be started only to read something
    c = m2["counts"]
    assert m2["work_units"] == 0 and set(m2["timings"]) == {"hash_inputs_s"} and m2["files"] == []
    assert c["totals"]["skipped_inputs"] == 3 and c["totals"]["seen"] == 0
    assert c["totals"]["new"] == c["totals"]["already_ingested"] == 0
    for path, f in c["by_file"].items():  # named, never silent: by whom they were committed
        assert f["skipped"] == "unchanged" and f["committed_by"] == m1["run_id"], path
        assert f["seen"] == f["new"] == f["already_ingested"] == f["quarantined"] == 0
    assert {s: n["skipped_inputs"] for s, n in c["by_source"].items()} == {
        "csv": 1, "hl7": 1, "fhir": 1
    }  # fmt: skip
    assert all(i["skipped"] == "unchanged" for i in m2["inputs"])
    assert table.read_reports(cfg, all_versions=True).equals(before)
    # a third night still names the run that read them, not the night that skipped them
    m3 = run_ingest(cfg)
    assert {f["committed_by"] for f in m3["counts"]["by_file"].values()} == {m1["run_id"]}


def test_a_new_file_is_the_only_one_read(spark, exports, tmp_path):
    src = incoming(tmp_path, exports, "csv")
    cfg = cfg_for(tmp_path / "var", src)
    m1 = run_ingest(cfg, spark=spark)
    incoming(tmp_path, exports, "hl7")  # tonight's export lands beside last night's
    m2 = run_ingest(cfg, spark=spark)
    c = m2["counts"]
    csv_f, hl7_f = str(src / "reports.csv"), str(src / "oru.hl7")
    assert c["by_file"][csv_f]["skipped"] == "unchanged"
    assert c["by_file"][csv_f]["committed_by"] == m1["run_id"]
    hl7 = c["by_file"][hl7_f]
    assert hl7["seen"] == N and hl7["new"] == N and "skipped" not in hl7
    assert c["totals"]["seen"] == N and c["totals"]["already_ingested"] == 0
    assert c["totals"]["skipped_inputs"] == 1
    t = table.read_reports(cfg)
    assert pc.sum(pc.equal(t["source"], "hl7")).as_py() == N
    assert t.num_rows == m1["counts"]["totals"]["new"] + N


def test_a_changed_file_is_read_again_and_versioned(spark, exports, tmp_path):
    src = incoming(tmp_path, exports, "csv", "hl7")
    cfg = cfg_for(tmp_path / "var", src)
    m1 = run_ingest(cfg, spark=spark)
    rid = correct_one(src / "reports.csv")
    m2 = run_ingest(cfg, spark=spark)
    f = m2["counts"]["by_file"][str(src / "reports.csv")]
    assert f["seen"] == N and f["corrected"] == 1 and f["already_ingested"] == N - 1
    assert f["new"] == 0 and "skipped" not in f
    assert m2["counts"]["by_file"][str(src / "oru.hl7")]["skipped"] == "unchanged"
    rows = table.read_reports(cfg, all_versions=True)
    mine = rows.filter(pc.equal(rows["report_id"], rid)).sort_by("version")
    assert mine["version"].to_pylist() == [1, 2]
    assert mine["supersedes"][1].as_py() == mine["source_sha256"][0].as_py()
    assert mine["split"][1].as_py() == mine["split"][0].as_py()  # never moves between splits
    now = table.read_reports(cfg)
    assert now.filter(pc.equal(now["report_id"], rid))["findings"][0].as_py() == NEW_FINDINGS
    # the corrected state is the one committed now; the first night's stays in its manifest
    done = ledger.committed(cfg.path("table"))
    runs = {k[2]: r for k, r in done.items() if k[0] == str(src / "reports.csv")}
    assert sorted(runs.values()) == sorted([m1["run_id"], m2["run_id"]])


def test_a_crash_before_the_commit_marks_nothing_done(spark, exports, tmp_path, monkeypatch):
    src = incoming(tmp_path, exports, "csv")
    cfg = cfg_for(tmp_path / "var", src)
    m1 = run_ingest(cfg, spark=spark)
    incoming(tmp_path, exports, "fhir")
    real = table.commit

    def crash(root, run_id, record):  # parsed, staged, quarantine committed: then the power cut
        if record.get("kind") == "ingest":
            raise OSError("node lost")
        return real(root, run_id, record)

    monkeypatch.setattr(table, "commit", crash)
    with pytest.raises(OSError, match="node lost"):
        run_ingest(cfg, spark=spark)
    monkeypatch.setattr(table, "commit", real)
    done = ledger.committed(cfg.path("table"))
    assert {k[0] for k in done} == {str(src / "reports.csv")}  # the FHIR file: not done
    m3 = run_ingest(cfg, spark=spark)
    fhir = m3["counts"]["by_file"][str(src / "diagnosticreports.ndjson")]
    assert fhir["seen"] == fhir["new"] == N
    assert m3["counts"]["by_file"][str(src / "reports.csv")]["committed_by"] == m1["run_id"]


def test_full_reads_every_input_again(spark, exports, tmp_path):
    src = incoming(tmp_path, exports, "csv", "hl7")
    run_ingest(cfg_for(tmp_path / "var", src), spark=spark)
    args = build_parser().parse_args(
        ["ingest", "--full", "--out", str(tmp_path / "var" / "table"), str(src)]
    )
    cfg = config(args, {"paths.root": str(tmp_path / "var"), **flags(args)})
    assert cfg.ingest.skip_unchanged is False
    m = run_ingest(cfg, spark=spark)
    t = m["counts"]["totals"]
    assert t["skipped_inputs"] == 0 and t["seen"] == t["already_ingested"] == 2 * N
    assert not any(i.get("skipped") for i in m["inputs"])
    assert {i["committed_by"] for i in m["inputs"]} == {m["run_id"]}
    default = build_parser().parse_args(["ingest", str(src)])
    assert config(default, flags(default)).ingest.skip_unchanged is True


def csv_rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))[1:]


def test_a_file_quarantined_whole_is_retried_when_changed(spark, exports, tmp_path):
    src = incoming(tmp_path, exports, "csv")
    rows = csv_rows(src / "reports.csv")
    late = src / "late.csv"
    late.write_text("what,ever\n" + csv_text(rows).split("\n", 1)[1])  # a header it cannot map
    cfg = cfg_for(tmp_path / "var", src)
    m1 = run_ingest(cfg, spark=spark)
    assert m1["counts"]["by_file"][str(late)]["quarantined"] >= 1
    assert m1["counts"]["by_file"][str(late)]["new"] == 0
    m2 = run_ingest(cfg, spark=spark)  # unchanged: the same quarantine, not read again
    assert m2["counts"]["by_file"][str(late)]["skipped"] == "unchanged"
    for r in rows:  # the interface sends it again, right, with its own report ids
        r[0] = f"9{r[0]}"
    late.write_text(csv_text(rows))
    m3 = run_ingest(cfg, spark=spark)
    f = m3["counts"]["by_file"][str(late)]
    assert "skipped" not in f and f["new"] == f["seen"] == N and f["quarantined"] == 0
    assert m3["counts"]["by_file"][str(src / "reports.csv")]["skipped"] == "unchanged"


def test_an_input_with_a_repeated_report_id_is_read_again(spark, exports, tmp_path):
    """Two versions of one report in one night: the later is quarantined as a duplicate id, and
    its input is not done: the next night reads it again and the version arrives, corrected."""
    src = incoming(tmp_path, exports, "csv")
    rows = csv_rows(src / "reports.csv")
    row = next(r for r in rows if len(r[6].split()) >= 10 and len(r[7].split()) >= 2)
    row[6] = NEW_FINDINGS
    (src / "resent.csv").write_text(csv_text([row]))
    cfg = cfg_for(tmp_path / "var", src)
    m1 = run_ingest(cfg, spark=spark)
    dup = [p for p, f in m1["counts"]["by_file"].items() if f["duplicate_ids"]]
    assert len(dup) == 1
    assert {i["path"]: i["done"] for i in m1["inputs"]} == {
        p: p not in dup for p in m1["counts"]["by_file"]
    }
    m2 = run_ingest(cfg, spark=spark)
    assert [p for p, f in m2["counts"]["by_file"].items() if not f.get("skipped")] == dup
    assert m2["counts"]["totals"]["corrected"] == 1
    m3 = run_ingest(cfg, spark=spark)
    assert m3["counts"]["totals"]["skipped_inputs"] == 2 and m3["work_units"] == 0


def comparable(t):
    keys = [c for c in t.column_names if c not in ("ingest_run_id", "ingested_at")]
    t = t.select(keys)
    return t.sort_by(
        [(c, "ascending") for c in ("report_id", "version", "source_uri") if c in keys]
    )


def test_the_table_is_the_table_of_a_full_reingest(spark, exports, tmp_path):
    """The same three nights (a first export; a new file and a corrected report; nothing new)
    with the ledger and with every input read every night: the same rows and quarantine."""
    out = {}
    for name, skip in (("ledger", True), ("full", False)):
        src = incoming(tmp_path / name, exports, "csv", "hl7")
        (src / "bad.ndjson").write_text('{"resourceType": "DiagnosticReport", "id": \n')
        cfg = cfg_for(tmp_path / name / "var", src, **{"ingest.skip_unchanged": skip})
        run_ingest(cfg, spark=spark)
        incoming(tmp_path / name, exports, "fhir")
        correct_one(src / "reports.csv")
        run_ingest(cfg, spark=spark)
        m = run_ingest(cfg, spark=spark)
        out[name] = (
            comparable(table.read_reports(cfg, all_versions=True)),
            comparable(table.read(quarantine_root(cfg), "quarantine")).drop_columns(["source_uri"]),
            m,
        )
    (rows, q, m), (full_rows, full_q, full_m) = out["ledger"], out["full"]
    assert rows.num_rows == 3 * N + 1 and q.num_rows >= 1
    assert rows.to_pylist() == [
        {**r, "source_uri": r["source_uri"].replace("/full/", "/ledger/")}
        for r in full_rows.to_pylist()
    ]
    assert q.drop_columns(["quarantine_id"]).equals(full_q.drop_columns(["quarantine_id"]))
    assert m["counts"]["totals"]["skipped_inputs"] == 4 and m["counts"]["totals"]["seen"] == 0
    assert full_m["counts"]["totals"]["seen"] == full_m["counts"]["totals"]["already_ingested"] + 1
