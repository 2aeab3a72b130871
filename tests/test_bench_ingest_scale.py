"""bench/ingest_scale.py at tiny sizes: the split-file cut, the speed-up arithmetic, the event-log
spill sums, and the --parallel and --mimic modes end to end (no timings asserted).

    .venv/bin/pytest tests/test_bench_ingest_scale.py -q
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from radgpt.sample.base import gzip_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: scripts, not installed
from bench import ingest_scale  # noqa: E402


def split_file(tmp_path, rows):
    p = tmp_path / "mimic-cxr-2.0.0-split.csv.gz"
    text = "dicom_id,study_id,subject_id,split\n" + "".join(f"{a},{b},1,train\n" for a, b in rows)
    p.write_bytes(gzip_bytes(text.encode()))
    return p


def rows_of(p):
    return [tuple(x.split(",")[:2]) for x in gzip.decompress(p.read_bytes()).decode().split()[1:]]


def test_trim_split_keeps_every_study_and_drops_extra_rows_from_the_end(tmp_path):
    p = split_file(tmp_path, [("d1", 1), ("d2", 1), ("d3", 2), ("d4", 1), ("d5", 3), ("d6", 2)])
    assert ingest_scale.trim_split(p, 4) == {"rows": 4, "studies": 3}
    assert rows_of(p) == [("d1", "1"), ("d2", "1"), ("d3", "2"), ("d5", "3")]
    assert ingest_scale.trim_split(p, 10) == {"rows": 4, "studies": 3}  # nothing to cut
    with pytest.raises(ValueError, match="cannot hold 3 studies"):
        ingest_scale.trim_split(p, 2)


def test_speedup_and_cores():
    r = ingest_scale.speedup([10.0, 12.0, 11.0], [6.0, 5.0, 7.0], ingest_scale.cores_of("local[2]"))
    assert r == {"median_s": [11.0, 6.0], "speedup": 1.83, "efficiency": 0.92,
                 "per_pair": [1.67, 2.4, 1.57]}  # fmt: skip


def test_spilled_sums_task_ends(tmp_path):
    ev = tmp_path / "events"
    ev.mkdir()
    end = {"Event": "SparkListenerTaskEnd", "Task Metrics": {"Memory Bytes Spilled": 5,
           "Disk Bytes Spilled": 2, "Peak Execution Memory": 3 << 20}}  # fmt: skip
    lines = [{"Event": "SparkListenerJobStart"}, end, end | {"Task Metrics": None}, end]
    (ev / "eventlog_v2_app-1").mkdir()
    (ev / "eventlog_v2_app-1" / "events_1_app-1").write_text(
        "".join(json.dumps(x) + "\n" for x in lines)
    )
    assert ingest_scale.spilled(ev) == {
        "memory_bytes_spilled": 10, "disk_bytes_spilled": 4, "task_peak_execution_mb": 3.0
    }  # fmt: skip


def test_parallel_mode_at_a_tiny_size():
    r = ingest_scale.run_parallel(40, ["local[1]", "local[2]"], 1, [])
    for m in ("local[1]", "local[2]"):
        assert r["runs"][m]["steady_state"]["reports"] > 0
        assert len(r["runs"][m]["warm_parse_s"]) == 1
    assert set(r["parse_stage"]) == {"median_s", "speedup", "efficiency", "per_pair"}
    assert len(r["whole_job"]["per_pair"]) == 1
    assert all(r["cores_used"][m] > 0 for m in ("local[1]", "local[2]"))


def test_mimic_mode_at_a_tiny_size(tmp_path):
    r = ingest_scale.run_mimic(30, 40, tmp_path, keep=False)
    assert r["ingest"]["rc"] == 0, r.get("log_tail")
    assert r["written"]["split_file"]["rows"] == 40 <= r["written"]["generator_split_rows"]
    assert r["reconciled"] and r["totals"]["seen"] == 30
    assert r["ingest"]["driver_peak_mb"] > 0 and r["ingest"]["jvm_peak_mb"] > 0
    assert r["spark"]["disk_bytes_spilled"] == 0
    assert not (tmp_path / "bench-mimic").exists()  # the data is removed
