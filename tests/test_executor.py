"""The ingest job's task functions (radgpt.ingest.executor) called directly, as Spark's mapInArrow would:
parsed rows stay in Arrow files, keys point at them, the write step checks the contract."""

import datetime as dt
import json
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fixtures_sources import MIMIC_REPORT, write_mimic_dir

from radgpt.config import load_config
from radgpt.ingest import executor
from radgpt.ingest.plan import partitions, write_units
from radgpt.schema import ContractError, arrow_schema

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def parts_batch(*ids):
    return pa.record_batch([pa.array(ids, pa.int64())], names=["id"])  # spark.range's rows


@pytest.fixture
def parsed(tmp_path):
    """A MIMIC-CXR dir of 7 reports (one not UTF-8) parsed by two tasks into tmp_path/work."""
    reports = {(10000000 + i, 50000000 + i): MIMIC_REPORT.replace("cough", f"cough {i}").encode()
               for i in range(6)}  # fmt: skip
    reports[(10000099, 50000099)] = b"FINDINGS: \xff\xfe broken"
    src = write_mimic_dir(tmp_path / "mimic", reports)
    cfg = load_config(None, [("paths.root", str(tmp_path))], env={})
    work = tmp_path / "work"
    work.mkdir()
    index = write_units(cfg, [("mimic", src)], work / "units.jsonl", 2)
    fn = executor.parse_fn(cfg.ingest, str(work / "units.jsonl"), index, str(work))
    keys = pa.Table.from_batches(list(fn(iter([parts_batch(0, 1)]))), schema=executor.KEY_SCHEMA)
    return cfg, work, index, keys


def test_keys_point_at_the_parsed_rows(parsed):
    cfg, work, index, keys = parsed
    rep = keys.filter(pc.equal(keys["kind"], "report"))
    bad = keys.filter(pc.equal(keys["kind"], "bad"))
    assert (
        rep.num_rows == 6 and bad.num_rows == 1 and sum(n for *_, n in index) == 7
    )  # one unit per patient folder
    assert bad["reason"].to_pylist() == ["bad_encoding"] and bad["report_id"][0].as_py() is None
    # each task says how many records it saw per input (here: the MIMIC tree, input 0)
    seen = keys.filter(pc.equal(keys["kind"], "seen"))
    assert set(seen["_input"].to_pylist()) == {0} and sum(seen["seen"].to_pylist()) == 7
    assert set(keys["_input"].to_pylist()) == {0}  # every row names its input
    for part in (0, 1):
        with pa.memory_map(executor.parsed_path(str(work), part)) as f:
            t = pa.ipc.open_file(f).read_all()
        mine = rep.filter(pc.equal(rep["_part"], part))
        assert t.num_rows == mine.num_rows > 0  # the byte balance gave both tasks work
        got = t.take(mine["_idx"])
        assert got["report_id"].to_pylist() == mine["report_id"].to_pylist()
        assert got["pair_sha256"].to_pylist() == mine["pair_sha256"].to_pylist()
        assert None not in t["findings"].to_pylist() + t["impression"].to_pylist()


def test_a_retried_task_writes_the_same_file(parsed):
    cfg, work, index, _ = parsed
    path = executor.parsed_path(str(work), 1)
    before = open(path, "rb").read()
    fn = executor.parse_fn(cfg.ingest, str(work / "units.jsonl"), index, str(work))
    list(fn(iter([parts_batch(1)])))
    assert open(path, "rb").read() == before
    assert not list(work.glob("*.tmp"))  # temp files renamed into place


def test_a_changed_unit_file_fails_the_task(parsed):
    cfg, work, index, _ = parsed
    (off, size, n), last = index[0], index[1]
    for wrong in ([(off, size, n + 1), last], [(off, size - 1, n), last]):  # count, bytes
        fn = executor.parse_fn(cfg.ingest, str(work / "units.jsonl"), wrong, str(work))
        with pytest.raises(RuntimeError, match="work units, the driver wrote"):
            list(fn(iter([parts_batch(0)])))
    units = work / "units.jsonl"  # another file at the path: partition 1's lines moved
    units.write_bytes(b"\n" + units.read_bytes())
    fn = executor.parse_fn(cfg.ingest, str(units), index, str(work))
    with pytest.raises(RuntimeError, match="partition 1 has 0 work units, the driver wrote"):
        list(fn(iter([parts_batch(1)])))


def test_a_task_reads_only_its_own_units(parsed):
    """Task i seeks to its partition's bytes: the other partitions' lines are never read (here
    they are garbage, and task 1 still parses its units)."""
    cfg, work, index, keys = parsed
    units = work / "units.jsonl"
    data = bytearray(units.read_bytes())
    off, size, _ = index[1]
    data[:off] = b"x" * off  # partition 0's lines: not units any more
    units.write_bytes(bytes(data))
    fn = executor.parse_fn(cfg.ingest, str(units), index, str(work))
    got = pa.Table.from_batches(list(fn(iter([parts_batch(1)]))), schema=executor.KEY_SCHEMA)
    mine = keys.filter(pc.equal(keys["_part"], 1))
    assert got.filter(pc.equal(got["kind"], "report")).num_rows == mine.num_rows > 0


def states(keys, split="test", state="new", version=1, supersedes=None):
    """STATE rows (what radgpt.ingest.cohort gives write_fn) for the parsed report keys."""
    rep = keys.filter(pc.equal(keys["kind"], "report"))
    n = rep.num_rows
    given = {
        "_state": pa.array([state] * n), "split": pa.array([split] * n, pa.string()),
        "split_origin": pa.array(["random"] * n), "version": pa.array([version] * n, pa.int32()),
        "supersedes": pa.array([supersedes] * n, pa.string()), "_amended": pa.array([False] * n),
    }  # fmt: skip
    cols = [given.get(f.name) or rep[f.name].combine_chunks() for f in executor.STATE]
    return pa.record_batch(cols, schema=executor.STATE)


def test_write_counts_every_row_writes_new_ones_with_run_fields_by_source_and_split(
    parsed, tmp_path
):
    _, work, _, keys = parsed
    new = states(keys)
    seen = states(keys, state="seen").slice(0, 1)  # the first row is in the table already
    fn = executor.write_fn(str(work), str(staging := tmp_path / "staging"), "ingest-x", NOW)
    out = pa.Table.from_batches(list(fn(iter([seen, new.slice(1)])))).to_pylist()
    written = [r for r in out if r["what"] == "file"]
    counted = [r for r in out if r["what"] == "count"]
    assert sum(w["rows"] for w in written) == new.num_rows - 1 == 5
    assert {(w["source"], w["split"]) for w in written} == {("mimic", "test")}
    # the counts cover every row given, by state and rule outcome
    assert sum(c["rows"] for c in counted) == 6
    assert sum(c["rows"] for c in counted if c["_state"] == "seen") == 1
    assert {c["_state"] for c in counted} == {"new", "seen"}
    assert all(c["path"] is None and c["split"] == "test" for c in counted)
    reasons = Counter(r for r in keys.filter(pc.equal(keys["kind"], "report"))["exclusion_reason"]
                      .to_pylist()[1:])  # fmt: skip
    assert {c["exclusion_reason"]: c["rows"] for c in counted if c["_state"] == "new"} == reasons
    per_input = Counter()  # radgpt.ingest.counts' rows per (input, state)
    for r in out:
        if r["what"] == "input":
            per_input[r["_input"], r["_state"]] += r["rows"]
    assert per_input == {(0, "seen"): 1, (0, "new"): 5}
    files = sorted((staging / "source=mimic" / "split=test").glob("*.parquet"))
    assert [str(f) for f in files] == sorted(w["path"] for w in written)
    t = pa.concat_tables([pq.read_table(f) for f in files])
    want = [n for n in arrow_schema("reports").names if n not in executor.PARTITIONS]
    assert t.column_names == want  # hive partition columns live in the path only
    assert set(t["ingest_run_id"].to_pylist()) == {"ingest-x"}
    assert t["ingested_at"].type == pa.timestamp("us", tz="UTC")
    first = keys.filter(pc.equal(keys["kind"], "report"))["report_id"][0].as_py()
    assert first not in t["report_id"].to_pylist() and t.num_rows == 5
    assert list(fn(iter([]))) == []  # a task with no keys yields nothing
    assert set(t["version"].to_pylist()) == {1} and t["supersedes"].null_count == t.num_rows
    assert t["content_sha256"].null_count == 0  # what makes a version, from the parse


def test_write_writes_corrected_rows_as_new_versions(parsed, tmp_path):
    _, work, _, keys = parsed
    fn = executor.write_fn(str(work), str(staging := tmp_path / "staging"), "ingest-x", NOW)
    fixed = states(keys, state="corrected", version=2, supersedes="a" * 64).slice(0, 2)
    out = pa.Table.from_batches(list(fn(iter([fixed, states(keys, state="seen").slice(2)]))))
    counted = Counter()
    for r in (r for r in out.to_pylist() if r["what"] == "count"):
        counted[r["_state"]] += r["rows"]
    assert counted == {"corrected": 2, "seen": 4}
    t = pa.concat_tables([pq.read_table(f) for f in sorted(staging.rglob("*.parquet"))])
    assert t.num_rows == 2 and set(t["version"].to_pylist()) == {2}
    assert set(t["supersedes"].to_pylist()) == {"a" * 64}


def test_write_fails_loudly_on_a_contract_break(parsed, tmp_path):
    _, work, _, keys = parsed
    fn = executor.write_fn(str(work), str(tmp_path / "staging"), "ingest-x", NOW)
    with pytest.raises(ContractError, match="split: .* nulls"):
        list(fn(iter([states(keys, split=None)])))


def test_units_go_to_tasks_in_contiguous_runs_of_about_equal_bytes(tmp_path):
    reports = {(10000000 + i, 50000000 + i): MIMIC_REPORT.encode() for i in range(10)}
    src = write_mimic_dir(tmp_path / "mimic", reports)
    cfg = load_config(None, [("paths.root", str(tmp_path))], env={})
    path = tmp_path / "units.jsonl"
    index = write_units(cfg, [("mimic", src)], path, 3)
    assert sorted(n for *_, n in index) == [3, 3, 4] and index[0][0] == 0
    data = path.read_bytes()
    for i, (off, size, n) in enumerate(index):  # each partition's lines at its offset
        mine = data[off : off + size].decode().splitlines()
        assert len(mine) == n and {ln.split("\t")[0] for ln in mine} == {str(i)}
    lines = [ln.split("\t", 2) for ln in path.read_text().splitlines()]
    assert {inp for _, inp, _ in lines} == {"0"}  # the index of the unit's input
    lines = [(p, js) for p, _, js in lines]
    parts = [int(p) for p, _ in lines]
    assert parts == sorted(parts)  # contiguous: neighbouring folders share a task
    assert sorted(Counter(parts).values()) == [3, 3, 4]  # equal sizes: equal shares
    members = [json.loads(js)["member"] for _, js in lines]
    assert members == sorted(members) and len(set(members)) == 10  # each unit once, in order
    assert not list(tmp_path.glob("*.list"))  # the first pass's file is gone


def test_partitions_follow_the_input_bytes_and_the_cores():
    mb = 1 << 20
    assert partitions(0, 0, 2) == 1  # nothing to read: one (empty) task
    assert partitions(300_000, 900, 2) == 1  # a small night: one task, no idle worker start
    assert partitions(3 * mb, 900, 2) == 2  # every core gets a megabyte or more: all cores
    assert partitions(3 * mb, 900, 16) == 3
    assert partitions(1000 * mb, 10_000, 2) == 16  # 64 MB a task, a multiple of the cores
    assert partitions(1000 * mb, 10_000, 16) == 16
    assert partitions(1000 * mb, 5, 16) == 5  # never more tasks than units


@pytest.mark.parametrize("fmt", ["csv", "fhir"])
def test_row_ranges_share_their_files_bytes(tmp_path, fmt):
    """A CSV or NDJSON file's row ranges carry their share of its bytes (Unit.size), not the
    whole file's each: a big file gets partitions by its bytes, not one task per range."""
    from radgpt.ingest.sources import reader

    if fmt == "csv":
        from radgpt.sample.csvx import csv_text

        src = tmp_path / "r.csv"
        src.write_text(csv_text((i, "", "", "x", "", "", f"ok {i}", "fine") for i in range(25)))
    else:
        src = tmp_path / "r.ndjson"
        src.write_text("".join(json.dumps({"resourceType": "Patient", "id": str(i)}) + "\n"
                               for i in range(25)))  # fmt: skip
    cfg = load_config(None, [("paths.root", str(tmp_path)), ("ingest.csv_rows_per_unit", 10)],
                      env={})  # fmt: skip
    units = list(reader(fmt).units(src, cfg.ingest))
    assert [(u.start, u.stop) for u in units] == [(0, 10), (10, 20), (20, 25)]
    size = src.stat().st_size
    assert [u.size for u in units] == [-(-size * k // 25) for k in (10, 10, 5)]
    assert size <= sum(u.size for u in units) <= size + 3
    index = write_units(cfg, [(fmt, src)], tmp_path / "units.jsonl", None, cores=2)
    assert len(index) == 1  # a small file: one task (each range had the whole size: 3)
