"""HL7 v2 batch files split into ranges of messages (issue 18): the ranges' reads together are the
whole file's read, item for item (Raw/Bad, member ids, sizes), in every layout.

PYTHONPATH=$PWD .venv/bin/python -m pytest tests/test_hl7_units.py -q
"""

from __future__ import annotations

import gzip

import pytest
from fixtures_sources import hl7_message

from radgpt.config import IngestCfg
from radgpt.ingest.sources import hl7
from radgpt.ingest.sources.base import Bad, Unit
from radgpt.sample.hl7 import hl7_batch

CAP = 2000
N = 25


def batch() -> list[list[str]]:
    """25 messages: reports, bad ones on and around the boundaries of units of 10, one over the
    cap, a non-result."""
    text = [("TX", "FINDINGS: Clear lungs."), ("TX", "IMPRESSION: Normal chest.")]
    msgs = [hl7_message(f"C{i}", f"F{i}", text) for i in range(N)]
    msgs[9] = msgs[9][1:]  # no MSH: the last message of unit 0 is bad
    msgs[10] = ["GARBAGE|1|2", "ZZZ|x"]  # no MSH either: the first of unit 1
    msgs[14] = hl7_message("C14", "F14", [("TX", "FINDINGS: " + "word " * 600)])  # over the cap
    msgs[19] = hl7_message("C19", "F19", [("TX", "FINDINGS: " + "long " * 700)])  # last of unit 1
    msgs[20] = [s.replace("ORU^R01", "ADT^A01") for s in msgs[20]]  # not_a_report
    msgs[21] = [s for s in msgs[21] if not s.startswith("OBR")]  # bad_hl7: no OBR
    return msgs


def layouts() -> dict[str, bytes]:
    msgs = batch()
    return {
        "cr_segments_newline_messages": hl7_batch(msgs),  # _cr_lines: a newline ends a message
        "newline_segments": "\n".join("\n".join(m) for m in msgs).encode() + b"\n",
        "crlf_segments": "\r\n".join("\r\n".join(m) for m in msgs).encode() + b"\r\n",
        "cr_only": "\r".join("\r".join(m) for m in msgs).encode(),
        "mllp": b"".join(b"\x0b" + "\r".join(m).encode() + b"\r\x1c\r" for m in msgs),
        "mllp_newlines": b"".join(b"\x0b" + "\r".join(m).encode() + b"\r\x1c\r\n" for m in msgs),
        "leading_blanks_and_spaces": b"\n\r\n  " + hl7_batch(msgs).replace(b"\n", b"\n\n  "),
    }


def whole(path, cfg) -> list:
    """The read of the whole file as one unit, as before the split (no offset, layout learned)."""
    return list(hl7.read(Unit("hl7", str(path.resolve()), None, size=path.stat().st_size), cfg))


def ranges(path, cfg) -> tuple[list[Unit], list]:
    us = list(hl7.units(path, cfg))
    return us, [r for u in us for r in hl7.read(u, cfg)]


@pytest.mark.parametrize("layout", sorted(layouts()))
@pytest.mark.parametrize("step", [10, 1, 7, 1000])
def test_ranges_read_exactly_what_the_whole_file_reads(tmp_path, layout, step):
    p = tmp_path / "batch.hl7"
    p.write_bytes(layouts()[layout])
    cfg = IngestCfg(max_member_bytes=CAP, csv_rows_per_unit=step)
    one = whole(p, cfg)
    us, rs = ranges(p, cfg)
    assert rs == one  # the same Raw/Bad sequence: member ids, reasons, sha256, sizes, fields
    n = len(one)
    assert [r.member for r in rs] == [str(i) for i in range(n)]
    assert [(u.start, u.stop) for u in us] == [(a, min(a + step, n)) for a in range(0, n, step)]
    assert all(u.extra is not None and u.size > 0 for u in us)
    if layout.startswith("cr_segments"):  # one message a line: the 25 messages, as written
        assert n == N
    if n == N:
        reasons = {r.member: r.reason for r in rs if isinstance(r, Bad)}
        assert {m: reasons.get(m) for m in ("9", "10", "14", "19", "20", "21")} == {
            "9": "bad_hl7", "10": "bad_hl7", "14": "too_large", "19": "too_large",
            "20": "not_a_report", "21": "bad_hl7",
        }  # fmt: skip
        assert sum(not isinstance(r, Bad) for r in rs) == N - 6


def test_units_of_ten_give_three_units(tmp_path):
    p = tmp_path / "batch.hl7"
    p.write_bytes(hl7_batch(batch()))
    cfg = IngestCfg(max_member_bytes=CAP, csv_rows_per_unit=10)
    us, rs = ranges(p, cfg)
    assert [(u.start, u.stop) for u in us] == [(0, 10), (10, 20), (20, 25)]
    assert sum(u.size for u in us) == p.stat().st_size  # byte ranges: the balancing is honest
    assert [len(list(hl7.read(u, cfg))) for u in us] == [10, 10, 5]
    # each range starts at its first message's bytes
    data = p.read_bytes()
    for u in us[1:]:
        off = int(u.extra.split(",")[0])
        assert data[off - 1 : off] == b"\n"


def test_gzip_offsets_in_the_decompressed_stream_and_a_truncated_one(tmp_path):
    data = hl7_batch(batch())
    cfg = IngestCfg(max_member_bytes=CAP, csv_rows_per_unit=10)
    gz = tmp_path / "batch.hl7.gz"
    gz.write_bytes(gzip.compress(data))
    us, rs = ranges(gz, cfg)
    assert len(us) == 3 and rs == whole(gz, cfg) and len(rs) == N
    plain = tmp_path / "plain.hl7"
    plain.write_bytes(data)
    assert [u.extra for u in us] == [u.extra for u in hl7.units(plain, cfg)]
    cut = tmp_path / "cut.hl7.gz"  # ends early, in a message of the last unit
    big = gzip.compress(data * 40)
    cut.write_bytes(big[: len(big) * 2 // 3])
    us, rs = ranges(cut, cfg)
    one = whole(cut, cfg)
    assert rs == one and one[-1].reason == "truncated" and len(us) > 3
    assert [r.member for r in rs] == [str(i) for i in range(len(rs))]


def test_a_folder_splits_only_its_big_files(tmp_path, monkeypatch):
    d = tmp_path / "feed"
    d.mkdir()
    (d / "big.hl7").write_bytes(hl7_batch(batch()))
    (d / "one.hl7").write_bytes("\r".join(batch()[0]).encode())
    (d / "empty.hl7").write_bytes(b"")
    cfg = IngestCfg(max_member_bytes=CAP, csv_rows_per_unit=10)
    monkeypatch.setattr(hl7, "SPLIT_BYTES", 1000)
    us = list(hl7.units(d, cfg))
    by = {}
    for u in us:
        by.setdefault(u.uri.rsplit("/", 1)[1], []).append(u)
    assert [(u.start, u.stop) for u in by["big.hl7"]] == [(0, 10), (10, 20), (20, 25)]
    assert [(u.start, u.stop, u.extra) for u in by["one.hl7"]] == [(0, -1, None)]
    assert by["empty.hl7"][0].fault.startswith("empty_file")
    big = [r for u in by["big.hl7"] for r in hl7.read(u, cfg)]
    assert big == whole(d / "big.hl7", cfg)


def test_a_file_of_blank_lines_and_a_file_that_changed_since_the_units(tmp_path):
    cfg = IngestCfg(max_member_bytes=CAP, csv_rows_per_unit=10)
    p = tmp_path / "blank.hl7"
    p.write_bytes(b"\n\r\n\x0b\x1c\n")
    us, rs = ranges(p, cfg)
    assert len(us) == 1 and rs == []
    p = tmp_path / "shrunk.hl7"
    p.write_bytes(hl7_batch(batch()))
    us = list(hl7.units(p, cfg))
    p.write_bytes(hl7_batch(batch()[:5]))  # rewritten shorter: the later ranges find nothing
    assert [len(list(hl7.read(u, cfg))) for u in us] == [5, 0, 0]  # never raises
