"""Cohort rules on a real SparkSession: exclusion reasons, seeded splits, duplicates, increments."""

import datetime as dt

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from radgpt.config import IngestCfg
from radgpt.ingest.cohort import KEYS, transform
from radgpt.ingest.executor import REPORT_KEYS
from radgpt.ingest.rows import exclusion, pair_hash
from radgpt.ingest.run import spark_ddl

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
LONG = "The heart is normal in size. The lungs are clear without effusion or pneumothorax today."


@pytest.mark.parametrize(
    "findings,impression,reason",
    [
        (None, "No acute disease.", "no_findings"),
        (LONG, None, "no_impression"),
        ("Lungs clear.", "No acute disease.", "findings_too_short"),
        (LONG, "Normal.", "impression_too_short"),
        (LONG, "No acute disease.", None),
        ("one two three four five six seven eight nine ten", "Normal chest", None),  # boundaries
        ("one two three four five six seven eight nine", "Normal chest", "findings_too_short"),
    ],
)
def test_paper_exclusion_rules(findings, impression, reason):
    assert exclusion(findings, impression, IngestCfg()) == reason


def rows(n, source="csv", official=None, findings=LONG, impression="No acute disease."):
    out = []
    for i in range(n):
        f = findings if findings is None else f"{findings} #{i}"
        out.append(
            {
                "report_id": f"{source}:{i}", "source": source, "source_uri": "/in", "source_member": str(i),
                "source_sha256": "x", "native_id": str(i), "patient_id": None, "study_id": None,
                "exam_time": None, "exam": None, "status": None, "sections": None,
                "findings": f, "impression": impression, "findings_words": 15, "impression_words": 3,
                "pair_sha256": pair_hash(f, impression), "eligible": True, "exclusion_reason": None,
                "official_split": official,
            }
        )  # fmt: skip
    return out


def run(spark, data, existing=None, cfg=None):
    """The key rows radgpt.ingest.executor would yield for `data` (one task), through the rules."""
    keys = [{k: r[k] for k in KEYS if k in r} | {"_part": 0, "_idx": i} for i, r in enumerate(data)]
    df = spark.createDataFrame(keys, spark_ddl(pa.schema(REPORT_KEYS)))
    out = transform(df, existing, cfg or IngestCfg())
    if existing is not None:  # an incremental night's plan (the table cut to this run's ids and
        few = transform(df, existing, cfg or IngestCfg(), few=True)  # pairs first): the same
        assert sorted(few["keys"].collect()) == sorted(out["keys"].collect())
    return out


def test_random_split_proportions_and_stability(spark):
    out = run(spark, rows(3000))["keys"]
    counts = {r["split"]: r["count"] for r in out.groupBy("split").count().collect()}
    # paper's OpenI proportions 2400:292:576 of 3268 = 73.4% : 8.9% : 17.6%
    assert abs(counts["train"] / 3000 - 2400 / 3268) < 0.03
    assert abs(counts["validate"] / 3000 - 292 / 3268) < 0.02
    assert abs(counts["test"] / 3000 - 576 / 3268) < 0.03
    again = {r["report_id"]: r["split"] for r in run(spark, rows(3000))["keys"].collect()}
    first = {r["report_id"]: r["split"] for r in out.collect()}
    assert again == first  # seeded: same report, same split, every night
    other_seed = run(spark, rows(3000), cfg=IngestCfg(seed=1))["keys"].collect()
    assert {r["report_id"]: r["split"] for r in other_seed} != first


def test_official_split_wins(spark):
    out = run(spark, rows(50, source="mimic", official="validate"))["new"].collect()
    assert {r["split"] for r in out} == {"validate"}
    assert {r["split_origin"] for r in out} == {"official"}


def test_duplicate_pairs_share_one_split(spark):
    dup = rows(200, findings=None)  # placeholder, overwritten below
    for r in dup:  # 200 different reports, all with the same (findings, impression) pair
        r["findings"], r["pair_sha256"] = LONG, pair_hash(LONG, "No acute disease.")
    out = run(spark, dup)["new"].collect()
    assert len({r["split"] for r in out}) == 1
    assert sum(r["split_origin"] == "duplicate" for r in out) > 0


def test_incremental_drops_seen_and_keeps_prior_split(spark, tmp_path):
    first = run(spark, rows(100))["new"]
    first.write.parquet(str(tmp_path / "t"))
    existing = spark.read.parquet(str(tmp_path / "t"))
    more = rows(120)  # 100 seen + 20 new
    twin = dict(more[0], report_id="csv:twin", native_id="twin")  # same pair as a seen report
    out = run(spark, more + [twin], existing)
    assert out["new"].count() == 21 and out["seen"].count() == 100
    prior = {r["report_id"]: r["split"] for r in first.collect()}
    got = out["new"].filter("report_id = 'csv:twin'").collect()[0]
    assert got["split"] == prior["csv:0"]


def test_duplicate_ids_in_one_run_are_split_off(spark):
    data = rows(10) + [dict(rows(1)[0], source_uri="/other")]
    out = run(spark, data)
    assert out["new"].count() == 10 and out["dup_ids"].count() == 1
    assert out["dup_ids"].collect()[0]["source_uri"] == "/other"


def test_duplicate_pair_takes_the_first_occurrence_split(spark):
    same = pair_hash(LONG, "No acute disease.")
    csv = [dict(r, findings=LONG, pair_sha256=same) for r in rows(40)]
    alone = run(spark, [csv[0]])["new"].collect()[0]["split"]  # csv:0 is the smallest report_id
    out = {r["report_id"]: r for r in run(spark, csv)["new"].collect()}
    assert {r["split"] for r in out.values()} == {alone}
    moved = [r for r in out.values() if r["split_origin"] == "duplicate"]
    assert 0 < len(moved) < 40 and out["csv:0"]["split_origin"] == "random"
    # an official split wins over random ones, whatever the report_ids
    official = dict(
        rows(1, source="mimic", official="validate")[0], findings=LONG, pair_sha256=same
    )
    out = run(spark, csv + [official])["new"].collect()
    assert {r["split"] for r in out} == {"validate"} and len(out) == 41
    assert {r["split_origin"] for r in out if r["source"] == "mimic"} == {"official"}


def versioned(n, tag="a"):
    """rows(n) with per-row bytes and content hashes (as radgpt.ingest.rows.report_row gives)."""
    return [dict(r, source_sha256=f"sha-{tag}-{i}", content_sha256=f"content-{tag}-{i}")
            for i, r in enumerate(rows(n))]  # fmt: skip


def test_changed_content_is_a_new_version_in_the_first_version_split(spark, tmp_path):
    first = run(spark, versioned(4))["new"]
    assert {r["version"] for r in first.collect()} == {1}
    # the table holds csv:0 in another split than its own (as a duplicate pair would have put it)
    own = {r["report_id"]: r["split"] for r in first.collect()}
    other = "validate" if own["csv:0"] != "validate" else "test"
    first.withColumn(
        "split", F.when(F.col("report_id") == "csv:0", other).otherwise(F.col("split"))
    ).withColumn(
        "split_origin",
        F.when(F.col("report_id") == "csv:0", "duplicate").otherwise(F.col("split_origin")),
    ).write.parquet(str(tmp_path / "t"))
    existing = spark.read.parquet(str(tmp_path / "t"))
    again = versioned(4)
    changed = "tension pneumothorax, new text"
    again[0] |= {"source_sha256": "sha-b-0", "content_sha256": "content-b-0", "findings": changed,
                 "pair_sha256": pair_hash(changed, "No acute disease.")}  # fmt: skip
    # csv:1 byte-identical; csv:2 status corrected, other bytes, same content
    again[2] |= {"source_sha256": "sha-b-2", "status": "corrected"}
    again[3] |= {"source_sha256": "sha-b-3", "status": "C", "content_sha256": None}  # old row: pair
    out = run(spark, again, existing)
    keys = {r["report_id"]: r for r in out["keys"].collect()}
    assert {k: r["_state"] for k, r in keys.items()} == {
        "csv:0": "corrected", "csv:1": "seen", "csv:2": "seen", "csv:3": "seen"}  # fmt: skip
    v2 = out["corrected"].collect()
    assert len(v2) == 1 and out["new"].count() == 0
    assert (v2[0]["version"], v2[0]["supersedes"]) == (2, "sha-a-0")
    assert (v2[0]["split"], v2[0]["split_origin"]) == (other, "duplicate")  # never moved
    assert [keys[k]["_amended"] for k in sorted(keys)] == [False, False, True, True]


def test_third_version_and_an_old_export_run_again(spark, tmp_path):
    v1 = versioned(2)
    t1 = run(spark, v1)["new"]
    t1.write.parquet(str(tmp_path / "t"))
    v2 = [dict(v1[0], source_sha256="sha-b-0", content_sha256="content-b-0")]
    t2 = run(spark, v2, spark.read.parquet(str(tmp_path / "t")))["corrected"]
    t2.write.mode("append").parquet(str(tmp_path / "t"))
    existing = spark.read.parquet(str(tmp_path / "t"))
    v3 = dict(v1[0], source_sha256="sha-c-0", content_sha256="content-c-0")
    out = {r["report_id"]: r for r in run(spark, [v3, v1[1]], existing)["keys"].collect()}
    assert (out["csv:0"]["_state"], out["csv:0"]["version"]) == ("corrected", 3)
    assert out["csv:0"]["supersedes"] == "sha-b-0" and out["csv:1"]["_state"] == "seen"
    # the first export run again (bytes of version 1): nothing changes back
    old = run(spark, v1, existing)["keys"].collect()
    assert {r["_state"] for r in old} == {"seen"}
    # a record with version 1's content but other bytes, after version 2: a new version (a
    # correction reverted), compared with the latest version only
    back = dict(v1[0], source_sha256="sha-d-0")
    got = run(spark, [back], existing)["corrected"].collect()
    assert [(r["version"], r["supersedes"]) for r in got] == [(3, "sha-b-0")]


def test_duplicate_pair_follows_a_corrected_report_split(spark, tmp_path):
    first = run(spark, versioned(1))["new"]
    first.withColumn("split", F.lit("test")).write.parquet(str(tmp_path / "t"))
    existing = spark.read.parquet(str(tmp_path / "t"))
    text = "A corrected finding that another new report repeats word for word, here."
    pair = pair_hash(text, "No acute disease.")
    fixed = dict(versioned(1)[0], source_sha256="sha-b-0", content_sha256="c-b-0",
                 findings=text, pair_sha256=pair)  # fmt: skip
    twins = [dict(r, report_id=f"csv:t{i}", findings=text, pair_sha256=pair, source_sha256=f"t{i}")
             for i, r in enumerate(rows(30))]  # fmt: skip
    out = run(spark, [fixed, *twins], existing)["keys"].collect()
    assert {r["split"] for r in out} == {"test"}
    assert {r["_state"] for r in out} == {"new", "corrected"}
