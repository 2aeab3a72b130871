"""Issue 18: an HL7 batch file ingested as ranges of messages (several units, several parse tasks)
gives the table, the quarantine and the per-file counts of the same file read as one unit.

PYTHONPATH=$PWD .venv/bin/python -m pytest tests/test_ingest_hl7_units.py -q
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from fixtures_sources import hl7_message
from test_hl7_units import CAP, batch

from radgpt import table
from radgpt.config import load_config
from radgpt.ingest import plan
from radgpt.ingest.run import quarantine_root, run_ingest
from radgpt.ingest.sources import hl7
from radgpt.ingest.sources.base import Unit
from radgpt.sample.hl7 import hl7_batch

RUN_FIELDS = ("ingest_run_id", "ingested_at")


def cfg_for(root: Path, inp: Path, **sets):
    sets = {"paths.root": str(root), "ingest.inputs": [str(inp)],
            "ingest.max_member_bytes": CAP, **sets}  # fmt: skip
    return load_config(None, sets, env={})


def rows(t: pa.Table, key: str) -> list[dict]:
    t = t.drop_columns([c for c in RUN_FIELDS if c in t.column_names])
    return sorted(t.to_pylist(), key=lambda r: (str(r[key]), str(r.get("version"))))


def test_a_multi_unit_hl7_file_ingests_as_the_one_unit_file(spark, tmp_path, monkeypatch):
    msgs = batch()
    msgs[23] = hl7_message(
        "C23", "F2", [("TX", "FINDINGS: Other text."), ("TX", "IMPRESSION: Other.")]
    )
    p = tmp_path / "in" / "batch.hl7"  # F2 again in unit 2: a duplicate id of unit 0's report
    p.parent.mkdir()
    p.write_bytes(hl7_batch(msgs))

    split = cfg_for(
        tmp_path / "split", p, **{"ingest.csv_rows_per_unit": 10, "spark.partitions": 3}
    )
    assert [(u.start, u.stop) for u in hl7.units(p, split.ingest)] == [(0, 10), (10, 20), (20, 25)]
    index = plan.write_units(split, [("hl7", p)], tmp_path / "units.jsonl", 3)
    assert [n for *_, n in index] == [1, 1, 1]  # one range per parse task
    m_split = run_ingest(split, spark=spark)

    # as before the split: one unit for the file, no offset (the driver's listing only)
    one = cfg_for(tmp_path / "one", p)
    with monkeypatch.context() as mp:
        mp.setattr(hl7, "units", lambda path, cfg: iter([Unit("hl7", str(Path(path).resolve()),
                                                               None, size=p.stat().st_size)]))  # fmt: skip
        m_one = run_ingest(one, spark=spark)

    reports = [rows(table.read_reports(c, all_versions=True), "report_id") for c in (one, split)]
    assert reports[0] == reports[1] and len(reports[0]) == 25 - 7
    quar = [
        rows(table.read(quarantine_root(c), "quarantine"), "quarantine_id") for c in (one, split)
    ]
    assert quar[0] == quar[1]
    assert sorted((q["source_member"], q["reason"]) for q in quar[1]) == sorted([
        ("9", "bad_hl7"), ("10", "bad_hl7"), ("14", "too_large"), ("19", "too_large"),
        ("20", "not_a_report"), ("21", "bad_hl7"), ("23", "duplicate_report_id"),
    ])  # fmt: skip
    by = [m["counts"]["by_file"][str(p)] for m in (m_one, m_split)]
    assert by[0] == by[1]
    c = by[1]
    assert (
        c["seen"]
        == 25
        == c["new"] + c.get("corrected", 0) + c["already_ingested"] + c["quarantined"]
    )
    assert (c["new"], c["quarantined"], c["duplicate_ids"]) == (18, 7, 1)
