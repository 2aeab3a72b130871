"""Issue 14 item 2: every input's records reconcile (radgpt.ingest.counts), counted apart from the
rows; a record lost anywhere fails the run before the commit, naming the input."""

from __future__ import annotations

import csv
import gzip
import json
import re
import tarfile
from pathlib import Path

import pytest

from radgpt import table
from radgpt.config import load_config
from radgpt.ingest import counts, executor
from radgpt.ingest.counts import Tally, balance, count, reconcile
from radgpt.ingest.run import run_ingest
from radgpt.ingest.sources.base import Raw, Unit


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from radgpt.sample.write import write_sample

    out = tmp_path_factory.mktemp("sample")
    write_sample(out, n=30, seed=3, bad=True)
    return out


def cfg_for(tmp_path, *inputs):
    sets = {"paths.root": str(tmp_path), "ingest.inputs": [str(p) for p in inputs]}
    return load_config(None, sets, env={})


# ---- the arithmetic, without Spark --------------------------------------------------------------


def test_tally_counts_what_the_driver_counted_else_what_the_reader_gave():
    t = Tally()
    csv_unit = Unit("csv", "/in/r.csv", None, 0, 10)  # units() counted 10 rows
    t.add(0, csv_unit, 9, False)  # the reader gave 9, no early end: a record is lost
    t.add(1, Unit("csv", "/in/s.csv", None, 0, 10), 4, True)  # ended early: 6 unread
    t.add(2, Unit("hl7", "/in/m.hl7"), 7, False)  # HL7: only read() knows
    t.add(2, Unit("hl7", "/in/m.hl7", None, 0, 3), 5, False)  # not UNIT_RECORDS: line ranges
    t.add(3, Unit("fhir", "/in/x", fault="empty_file\tno lines"), 1, True)  # a fault: 1 record
    t.add(4, Unit("openi", "/in/1.xml", "1.xml", 0, 1), 1, False)
    assert {r["_input"]: (r["seen"], r["unread"]) for r in t.rows()} == {
        0: (10, 0),
        1: (10, 6),
        2: (12, 0),
        3: (1, 0),
        4: (1, 0),
    }
    assert counts.expected(Unit("mimic", "/in/tree", "files/p10/p10000001/")) is None


def rows_for(inp: int, seen: int, new: int, bad: int, dup: int = 0, unread: int = 0):
    """What the parse and write tasks give the driver for one input."""
    parsed = [{"kind": "seen", "source": "csv", "reason": None, "_input": inp, "count": 1,
               "seen": seen, "unread": unread},
              {"kind": "bad", "source": "csv", "reason": "bad_csv", "_input": inp, "count": bad,
               "seen": None, "unread": None}]  # fmt: skip
    written = [{"what": w, "_input": inp if w == "input" else None, "_state": s, "rows": n,
                "source": "csv", "eligible": e, "exclusion_reason": None if e else "no_findings",
                "split": "test", "split_origin": "random", "_amended": False}
               for w in ("count", "input") for s, n, e in
               (("new", new - 1, True), ("new", 1, False), ("dup_id", dup, True))]  # fmt: skip
    return parsed, written


def test_count_per_file_and_reconcile_names_the_file_that_does_not_add_up():
    inputs = [("csv", Path("/in/a.csv")), ("csv", Path("/in/b.csv"))]
    pa_, wa = rows_for(0, seen=10, new=8, bad=1, dup=1)
    pb, wb = rows_for(1, seen=10, new=5, bad=1, unread=4)
    odd = [{"source": "unknown", "source_uri": "/in/x.bin", "reason": "unknown_format"}]
    c = count(wa + wb, pa_ + pb, odd, inputs)
    assert c["by_file"] == {
        "/in/a.csv": {"seen": 10, "new": 8, "corrected": 0, "excluded": 1, "already_ingested": 0,
                      "duplicate_ids": 1, "quarantined": 2},
        "/in/b.csv": {"seen": 10, "new": 5, "corrected": 0, "excluded": 1, "already_ingested": 0,
                      "duplicate_ids": 0, "quarantined": 1, "unread": 4},
        "/in/x.bin": {"seen": 1, "new": 0, "corrected": 0, "excluded": 0, "already_ingested": 0,
                      "duplicate_ids": 0, "quarantined": 1},
    }  # fmt: skip
    assert c["totals"]["seen"] == 21 and c["totals"]["quarantined"] == 4
    assert c["by_source"]["csv"]["eligible"] == 11 and c["by_source"]["unknown"]["seen"] == 1
    reconcile(14, c)  # 13 new + 1 duplicate id parsed
    lost = count(
        wa + wb, [dict(r, seen=11) if r["_input"] == 1 else r for r in pa_ + pb], [], inputs
    )
    with pytest.raises(
        RuntimeError, match=r"for 1 input\(s\).*/in/b\.csv: 11 records seen != 5 new"
    ):
        reconcile(14, lost)
    assert balance(lost["by_file"]["/in/a.csv"]) == 0


# ---- a record lost on the executor fails the run, naming the input ------------------------------


def dropping_reader(fmt: str):
    """parse_fn whose tasks use a `fmt` reader that drops each unit's first Raw silently (the
    patch is made inside the Spark worker: a reader is looked up there by name)."""
    real = executor.parse_fn

    def make(*a):
        fn = real(*a)

        def wrapped(batches):
            from radgpt.ingest.sources import reader

            mod = reader(fmt)
            read = mod.read

            def lossy(unit, cfg):
                dropped = False
                for item in read(unit, cfg):
                    if isinstance(item, Raw) and not dropped:
                        dropped = True
                        continue
                    yield item

            mod.read = lossy
            try:
                yield from fn(batches)
            finally:
                mod.read = read

        return wrapped

    return make


def test_a_record_dropped_by_a_reader_fails_the_run_naming_the_file(
    spark, sample, tmp_path, monkeypatch
):
    monkeypatch.setattr(executor, "parse_fn", dropping_reader("csv"))
    cfg = cfg_for(tmp_path, sample / "csv", sample / "hl7")
    src = re.escape(str(sample / "csv" / "reports.csv"))
    with pytest.raises(RuntimeError, match=rf"for 1 input\(s\).*{src}: 30 records seen != 29 new"):
        run_ingest(cfg, spark=spark)
    assert table.read_reports(cfg).num_rows == 0  # nothing committed


def test_a_row_lost_after_the_reader_fails_the_run_naming_the_file(
    spark, sample, tmp_path, monkeypatch
):
    """An HL7 file's records are counted as read() gives them: a report key lost between the
    reader and Spark (here: the task drops its first one) leaves the file one short."""
    real = executor.parse_fn

    def make(*a):
        fn = real(*a)

        def wrapped(batches):
            import pyarrow as pa

            dropped = False
            for b in fn(batches):
                kinds = b.column("kind").to_pylist()
                if not dropped and "report" in kinds:
                    dropped, first = True, kinds.index("report")
                    b = b.filter(pa.array([k != first for k in range(b.num_rows)]))
                yield b

        return wrapped

    monkeypatch.setattr(executor, "parse_fn", make)
    cfg = cfg_for(tmp_path, sample / "hl7")
    src = re.escape(str(sample / "hl7" / "oru.hl7"))
    with pytest.raises(RuntimeError, match=rf"{src}: 31 records seen != 29 new .* 1 quarantined"):
        run_ingest(cfg, spark=spark)
    assert table.read_reports(cfg).num_rows == 0


# ---- a clean run: per-file counts against independent counts, and the printed summary ----------


def independent_counts(src: Path) -> dict[str, int]:
    """Records per input, counted without the readers."""
    mimic = sum(1 for p in (src / "mimic" / "files").rglob("*") if p.is_file())
    with tarfile.open(src / "openi" / "NLMCXR_reports.tgz") as tf:
        openi = sum(1 for m in tf.getmembers() if not m.isdir())
    with open(src / "csv" / "reports.csv", newline="") as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
    ndjson = src / "fhir" / "diagnosticreports.ndjson"
    lines = sum(1 for ln in ndjson.read_bytes().splitlines() if ln.strip())
    entries = len(json.loads((src / "fhir" / "bundle.json").read_text())["entry"])
    hl7 = (src / "hl7" / "oru.hl7").read_bytes().split(b"\n")  # a message a line (one lacks MSH)
    messages = sum(1 for m in hl7 if m.strip())
    return {
        str(src / "mimic"): mimic,
        str(src / "openi" / "NLMCXR_reports.tgz"): openi,
        str(src / "csv" / "reports.csv"): rows,
        str(ndjson): lines,
        str(src / "fhir" / "bundle.json"): entries,
        str(src / "hl7" / "oru.hl7"): messages,
    }


def test_a_clean_run_adds_up_per_file_and_prints_per_source_totals(spark, sample, tmp_path, capsys):
    from radgpt import cli

    gz = tmp_path / "extra" / "more.csv.gz"  # plus an odd file and a gz CSV, in a mixed folder
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress((sample / "csv" / "reports.csv").read_bytes()))
    (gz.parent / "notes.bin").write_bytes(b"\x00\x01")
    rc = cli.main(["ingest", "--set", f"paths.root={tmp_path}", str(sample), str(gz.parent)])
    assert rc == 0
    out = capsys.readouterr().out
    (m,) = table.manifests(tmp_path / "table")
    c = m["counts"]
    want = independent_counts(sample) | {str(gz): 30, str(gz.parent / "notes.bin"): 1}
    assert {p: f["seen"] for p, f in c["by_file"].items()} == want
    assert all(balance(f) == 0 for f in c["by_file"].values())
    same = [c["by_file"][p]["duplicate_ids"] for p in (str(gz), str(sample / "csv/reports.csv"))]
    assert sum(same) == 30  # the same report ids in both CSV files: one of them is quarantined
    assert c["by_file"][str(sample / "mimic")]["quarantined"] == 1  # the bad_encoding report
    t = c["totals"]
    assert t["seen"] == sum(want.values()) == t["new"] + t["already_ingested"] + t["quarantined"]
    assert t["new"] == table.read_reports(load_config(None, {"paths.root": str(tmp_path)})).num_rows
    # the printed summary: one line per source whose terms add up, and they sum to the totals
    lines = re.findall(
        r"^ {4}(\w+) +(\d+) = (\d+) new \((\d+) excluded\) \+ (\d+) corrected \+ (\d+) already ingested \+ "
        r"(\d+) quarantined \((\d+) duplicate ids\)$",
        out,
        re.M,
    )
    assert {s for s, *_ in lines} == {"mimic", "openi", "csv", "fhir", "hl7", "unknown"}
    nums = [[int(x) for x in n] for _, *n in lines]
    assert all(seen == new + fixed + old + q for seen, new, _, fixed, old, q, _ in nums)
    assert sum(n[0] for n in nums) == t["seen"] and sum(n[5] for n in nums) == t["quarantined"]
    assert "inputs with quarantined records: " in out
