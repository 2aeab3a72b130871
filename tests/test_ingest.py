"""End to end ingest on a real local SparkSession over all five formats, with the quarantine,
increments, atomic commits and the real IU CSV (skipped when ../shared is absent)."""

import csv
import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from radgpt import table
from radgpt.config import load_config
from radgpt.ingest.run import quarantine_root, run_ingest
from radgpt.ingest.sources import FORMATS
from radgpt.sample.csvx import csv_text

N = 30  # reports per format


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from radgpt.sample.write import write_sample

    out = tmp_path_factory.mktemp("sample")
    manifest = write_sample(out, n=N, seed=3, bad=True)
    return out, manifest


def cfg_for(tmp_path, *inputs, **sets):
    """A config rooted in tmp_path that ingests these inputs (ingest.inputs)."""
    sets = {"paths.root": str(tmp_path), "ingest.inputs": [str(p) for p in inputs], **sets}
    return load_config(None, sets, env={})


def committed_quarantine(cfg):
    return table.read(quarantine_root(cfg), "quarantine")


def test_all_formats_end_to_end(spark, sample, tmp_path):
    src, manifest = sample
    cfg = cfg_for(tmp_path, src)
    m = run_ingest(cfg, spark=spark)
    t = table.read_reports(cfg)
    assert set(t.column("source").to_pylist()) == set(FORMATS)
    # every report id is unique, every row follows the contract, splits are the three names
    assert len(set(t.column("report_id").to_pylist())) == t.num_rows
    assert set(t.column("split").to_pylist()) <= {"train", "validate", "test"}
    # eligible <=> no exclusion reason; excluded rows carry the first failed rule
    elig = t.column("eligible").to_pylist()
    reasons = t.column("exclusion_reason").to_pylist()
    assert all((e and r is None) or (not e and r) for e, r in zip(elig, reasons, strict=True))
    # the deliberately bad inputs are quarantined with reasons, nothing else is
    q = committed_quarantine(cfg)
    qreasons = set(q.column("reason").to_pylist())
    assert {"bad_xml", "bad_json", "invalid_fhir", "bad_hl7", "bad_encoding"} <= qreasons
    # counts reconcile: rows in table + quarantine == what the manifest says
    tot = m["counts"]["totals"]
    assert tot["new"] == t.num_rows and tot["quarantined"] == q.num_rows
    assert tot["eligible"] + tot["excluded"] == tot["new"]
    assert sum(m["counts"]["new_by_rule"].values()) == tot["new"]
    # MIMIC official split came from the split file
    mim = t.filter(pc.equal(t.column("source"), "mimic"))
    assert set(mim.column("split_origin").to_pylist()) <= {"official", "duplicate"}
    # the FHIR and HL7 inputs' exam code and accession reach the table (the FHIR write-back's)
    coded = t.filter(pc.is_in(t.column("source"), pa.array(["fhir", "hl7"])))
    assert coded.num_rows and coded.column("accession").null_count == 0
    assert set(coded.column("exam_code").to_pylist()) == {"http://loinc.org|36643-5"}
    # every input is hashed: a file by content, a folder (MIMIC tree) by its listing
    from pathlib import Path

    from radgpt.ingest.ledger import input_hash
    from radgpt.runtime import sha256_file

    ins = {i["format"]: i for i in m["inputs"]}
    assert set(ins) == set(FORMATS) and all(len(i["sha256"]) == 64 for i in ins.values())
    assert ins["mimic"]["sha256"] == input_hash(Path(ins["mimic"]["path"]))
    assert ins["csv"]["sha256"] == sha256_file(Path(ins["csv"]["path"]))
    # report text never reaches the manifest (it holds counts, hashes and paths only)
    text = json.dumps(m)
    some = t.filter(t.column("eligible")).column("findings")[0].as_py()
    assert some not in text


def test_rerun_adds_nothing_and_new_files_add_only_new(spark, sample, tmp_path):
    src, _ = sample
    cfg = cfg_for(tmp_path, src / "csv")
    run_ingest(cfg, spark=spark)
    first = table.read_reports(cfg).num_rows
    m2 = run_ingest(cfg, spark=spark)  # the same file: skipped unread (radgpt.ingest.ledger)
    assert m2["counts"]["totals"]["new"] == m2["counts"]["totals"]["seen"] == 0
    assert m2["counts"]["totals"]["skipped_inputs"] == 1
    full = run_ingest(
        cfg_for(tmp_path, src / "csv", **{"ingest.skip_unchanged": False}), spark=spark
    )
    assert full["counts"]["totals"]["new"] == 0  # read again: every report already there
    assert full["counts"]["totals"]["already_ingested"] == first
    assert table.read_reports(cfg).num_rows == first
    m3 = run_ingest(cfg_for(tmp_path, src / "csv", src / "hl7"), spark=spark)
    hl7 = table.read_reports(cfg).filter(pc.equal(table.read_reports(cfg).column("source"), "hl7"))
    assert m3["counts"]["totals"]["new"] == hl7.num_rows > 0


def test_failed_commit_leaves_last_good_table(spark, sample, tmp_path, monkeypatch):
    src, _ = sample
    cfg = cfg_for(tmp_path, src / "csv")
    run_ingest(cfg, spark=spark)
    good = table.read_reports(cfg).num_rows
    real_commit = table.commit

    def crash(root, run_id, record):  # move the files, then die before the manifest
        if record.get("kind") == "ingest":
            st = table.staging_dir(root, run_id)
            for p in st.rglob("*.parquet"):
                dest = root / p.parent.relative_to(st) / f"part-{run_id}-crash.parquet"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(p, dest)
            raise OSError("disk went away")
        return real_commit(root, run_id, record)

    monkeypatch.setattr(table, "commit", crash)
    with pytest.raises(OSError):
        run_ingest(cfg_for(tmp_path, src / "hl7"), spark=spark)
    assert table.read_reports(cfg).num_rows == good  # readers of committed data see the old table
    monkeypatch.setattr(table, "commit", real_commit)
    m = run_ingest(cfg_for(tmp_path, src / "hl7"), spark=spark)  # recovery, then a clean run
    on_disk = spark.read.parquet(str(cfg.path("table"))).count()  # a plain Spark reader
    assert on_disk == table.read_reports(cfg).num_rows == good + m["counts"]["totals"]["new"]


def test_a_row_lost_by_the_rules_fails_the_run(spark, sample, tmp_path, monkeypatch):
    import radgpt.ingest.cohort

    src, _ = sample
    cfg = cfg_for(tmp_path, src / "csv")
    real = radgpt.ingest.cohort.transform

    def lossy(
        keys, existing, icfg, *more
    ):  # the rules lose a parsed row: counts, write never see it
        out = real(keys, existing, icfg, *more)
        first = out["keys"].agg({"report_id": "min"}).collect()[0][0]
        return {**out, "keys": out["keys"].filter(out["keys"].report_id != first)}

    monkeypatch.setattr(radgpt.ingest.cohort, "transform", lossy)
    with pytest.raises(RuntimeError, match="counts do not reconcile: parsed"):
        run_ingest(cfg, spark=spark)
    assert table.read_reports(cfg).num_rows == 0  # nothing committed


def test_a_row_lost_by_the_write_fails_the_run(spark, sample, tmp_path, monkeypatch):
    from radgpt.ingest import executor

    src, _ = sample
    cfg = cfg_for(tmp_path, src / "csv")
    real = executor.write_fn

    def lossy(*a):  # each written file loses its last row after the write (counted, not written)
        fn = real(*a)

        def wrapped(batches):
            import pyarrow.parquet as pq

            for b in fn(batches):
                for r in b.to_pylist():
                    if r["what"] == "file":
                        t = pq.ParquetFile(r["path"]).read()
                        pq.write_table(t.slice(0, r["rows"] - 1), r["path"])
                yield b

        return wrapped

    monkeypatch.setattr(executor, "write_fn", lossy)
    with pytest.raises(RuntimeError, match="reports rows written, .* counted"):
        run_ingest(cfg, spark=spark)
    assert table.read_reports(cfg).num_rows == 0  # nothing committed


def test_a_clean_night_commits_an_empty_quarantine(spark, tmp_path):
    from fixtures_sources import MIMIC_REPORT, write_mimic_dir

    src = write_mimic_dir(tmp_path / "mimic", {(10000001, 50000001): MIMIC_REPORT.encode(),
                                              (10000002, 50000002): MIMIC_REPORT.encode()})  # fmt: skip
    cfg = cfg_for(tmp_path, src)
    m = run_ingest(cfg, spark=spark)
    assert m["counts"]["totals"]["new"] == table.read_reports(cfg).num_rows == 2
    assert m["counts"]["totals"]["quarantined"] == committed_quarantine(cfg).num_rows == 0
    assert [q["run_id"] for q in table.manifests(quarantine_root(cfg))] == [m["run_id"]]


def test_unknown_files_and_oversized_members_are_quarantined(spark, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "notes.bin").write_bytes(b"\x00\x01 nothing we can read")
    big = ("1", "", "", "", "", "", "word " * 40, "No acute disease.")  # over 100 bytes
    (d / "big.csv").write_text(csv_text([big]))
    cfg = cfg_for(tmp_path, d, **{"ingest.max_member_bytes": 100})
    m = run_ingest(cfg, spark=spark)
    q = committed_quarantine(cfg)
    assert "unknown_format" in q.column("reason").to_pylist()
    assert m["counts"]["totals"]["quarantined"] == q.num_rows >= 1


@pytest.mark.data
def test_iu_csv_counts_match_an_independent_count(spark, iu_csv, tmp_path):
    """The Spark job's per-rule counts on the real IU CSV equal a plain-Python recount."""
    cfg = cfg_for(tmp_path, iu_csv)
    m = run_ingest(cfg, spark=spark)
    with open(iu_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    no_f = sum(not (r["findings"] or "").strip() for r in rows)
    no_i = sum(
        bool((r["findings"] or "").strip()) and not (r["impression"] or "").strip() for r in rows
    )
    by_rule = m["counts"]["new_by_rule"]
    assert m["counts"]["totals"]["new"] == len(rows) == 3251
    assert by_rule["no_findings"] == no_f and by_rule["no_impression"] == no_i
    # the splits are part of the product: the shipped adapter was trained on this train split and
    # evaluated on this test split (docs/ingest.md, models/iu-default/README.md)
    assert m["counts"]["eligible_by_split"] == {"test": 507, "train": 1948, "validate": 257}
    assert m["counts"]["duplicate_pairs_moved"] == 244
    t = table.read_reports(cfg)
    el = t.filter(t.column("eligible"))
    assert min(el.column("findings_words").to_pylist()) >= 10
    assert min(el.column("impression_words").to_pylist()) >= 2
    # exact duplicate (findings, impression) pairs never straddle splits
    pairs = {}
    for r in t.select(["pair_sha256", "split", "findings", "impression"]).to_pylist():
        if r["findings"] and r["impression"]:
            pairs.setdefault(r["pair_sha256"], set()).add(r["split"])
    assert sum(len(s) for s in pairs.values()) < el.num_rows  # the IU data has duplicates
    assert all(len(s) == 1 for s in pairs.values())
