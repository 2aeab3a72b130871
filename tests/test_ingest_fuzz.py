"""Issue 14 item 8: good records of all five formats (rendered by the sample's writers) mixed with
over 1,000 malformed records and odd files, through `radgpt ingest` with Spark, once: every good
record arrives, every malformed one is a quarantine row of its file, every input's counts add up,
nothing outside the input root is read, exit code 0 and no traceback.

Seeded: RADGPT_FUZZ_SEED=<n> .venv/bin/pytest tests/test_ingest_fuzz.py -m slow  (default 14)
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import tarfile
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from radgpt.sample.base import draw_time
from radgpt.sample.csvx import csv_row, csv_text
from radgpt.sample.fhir import FORMS, collection, diagnostic_report, fhir_report
from radgpt.sample.hl7 import hl7_segments, msh
from radgpt.sample.mimic import mimic_text, report_path
from radgpt.sample.openi import openi_document, openi_xml
from radgpt.sample.text import draw_cases

SEED = int(os.environ.get("RADGPT_FUZZ_SEED", "14"))
CAP = 20_000  # ingest.max_member_bytes of the run: "oversized" records are over it
BIG = b"x" * (CAP + 5_000)


class Plan:
    """What was written: good report ids and malformed records per input (the key of
    counts.by_file) and per quarantine source_uri; records of truncated files are `maybe`."""

    def __init__(self, r: random.Random) -> None:
        self.r = r
        self.good: dict[str, set[str]] = defaultdict(set)  # input -> report ids
        self.bad: Counter = Counter()  # quarantine source_uri -> rows
        self.bad_in: Counter = Counter()  # input -> quarantine rows
        self.maybe: dict[str, set[str]] = {}  # a truncated file -> the ids written to it
        self.n = 0

    def uid(self) -> int:
        self.n += 1
        return 100_000 + self.n

    def add_bad(self, inp: Path, uri: Path | None = None, n: int = 1) -> None:
        self.bad[str(uri or inp)] += n
        self.bad_in[str(inp)] += n

    def shuffled(self, good: list, bad: list) -> list:
        out = good + bad
        self.r.shuffle(out)
        return out


def cases(r, n, mark=None):
    return draw_cases(r, n, mark=mark)


# ---- CSV -----------------------------------------------------------------------------------------


def csv_line(uid: int, c) -> bytes:
    return csv_text([csv_row(uid, c, "PA")]).split("\n", 1)[1].encode()


def csv_records(plan: Plan, inp: Path, n_good: int, n_bad: int) -> bytes:
    r = plan.r
    good, ids = [], []
    for c in cases(r, n_good, "XXXX"):
        uid = plan.uid()
        good.append(csv_line(uid, c))
        ids.append(uid)
        plan.good[str(inp)].add(f"csv:{uid}")
    bad = []
    for _ in range(n_bad):
        uid = plan.uid()
        bad.append(r.choice([
            f"{uid},a,b\n".encode(),  # field count
            b",n,n,PA,,,The heart is normal. The lungs are clear of any effusion.,Normal.\n",
            f'{uid},n,n,PA,,,"caf\xe9 findings are here",No acute disease.\n'.encode("latin-1"),
            f'{uid},n,n,PA,,,"unclosed findings,No acute disease.\n'.encode(),  # broken quote
            f"{uid},n,n,PA,,,".encode() + BIG + b",No acute disease.\n",  # oversized
            b"   \n",  # one blank-ish field
            f'{uid},n,n,PA,,,"{"word " * 5000}",Impression.\n'.encode(),  # quoted, oversized
            csv_line(r.choice(ids), cases(r, 1, "XXXX")[0]),  # a duplicate report id
        ]))  # fmt: skip
        plan.add_bad(inp)
    header = csv_text([]).encode()
    return header + b"".join(plan.shuffled(good, bad))


# ---- FHIR ----------------------------------------------------------------------------------------


def dr(plan: Plan, inp: Path, c) -> dict:
    res = fhir_report(c, plan.r, f"pt{plan.uid()}", plan.r.choice(FORMS))
    plan.good[str(inp)].add(f"fhir:{res['id']}")
    return res


def no_text(plan: Plan) -> dict:
    when, issued = "2021-03-04T10:20:30Z", "2021-03-04T18:00:00Z"
    return diagnostic_report(f"nt{plan.uid()}", "p1", "A1", when, issued)


def ndjson_records(plan: Plan, inp: Path, n_good: int, n_bad: int) -> bytes:
    r = plan.r
    good = [json.dumps(dr(plan, inp, c)).encode() for c in cases(r, n_good)]
    bad = []
    for _ in range(n_bad):
        bad.append(r.choice([
            b'{"resourceType": "DiagnosticReport", "id": "tr',  # bad JSON
            b"[" * 5000 + b"]" * 5000,  # nested deeper than the parser goes
            b'{"resourceType": "DiagnosticReport", "id": "caf\xe9"}',  # not UTF-8
            json.dumps({"resourceType": "Patient", "id": f"p{plan.uid()}"}).encode(),
            json.dumps({"resourceType": "DiagnosticReport", "id": f"i{plan.uid()}"}).encode(),
            json.dumps(no_text(plan)).encode(),
            b"1" * 5000,  # an int past Python's digit limit
            b"[1, 2]", b"null", b"hello",
            b'{"resourceType": "DiagnosticReport", "pad": "' + BIG + b'"}',  # oversized
        ]))  # fmt: skip
        plan.add_bad(inp)
    lines = plan.shuffled(good, bad)
    for _ in range(5):  # blank lines are not records
        lines.insert(r.randrange(len(lines)), b"")
    return b"\n".join(lines) + b"\n"


def bundle(plan: Plan, inp: Path, n_good: int, n_bad: int) -> bytes:
    r = plan.r
    good = [dr(plan, inp, c) for c in cases(r, n_good)]
    bad = []
    for _ in range(n_bad):
        k = plan.uid()
        bad.append(r.choice([
            {"resourceType": "Patient", "id": f"p{k}"},
            {"resourceType": "DiagnosticReport", "id": f"i{k}"},
            no_text(plan),
            {"resourceType": "DiagnosticReport", "id": f"b{k}", "pad": BIG.decode()},
        ]))  # fmt: skip
        plan.add_bad(inp)
    doc = collection("b1", plan.shuffled(good, bad), "2024-01-01T00:00:00Z")
    doc["entry"].append({"fullUrl": "urn:uuid:no-resource"})  # an entry without a resource
    plan.add_bad(inp)
    return json.dumps(doc).encode()


# ---- HL7 -----------------------------------------------------------------------------------------


def hl7_records(plan: Plan, inp: Path, n_good: int, n_bad: int) -> bytes:
    r = plan.r
    good = []
    for c in cases(r, n_good):
        k = plan.uid()
        segs = hl7_segments(c, r, k, draw_time(r))
        for j in (1, 2):  # ORC-3 and OBR-3: a filler order number unique in this test
            fields = segs[j].split("|")
            fields[3] = f"F{k}"
            segs[j] = "|".join(fields)
        good.append("\r".join([msh(f"C{k}", "20240102120000"), *segs]).encode())
        plan.good[str(inp)].add(f"hl7:F{k}")
    adt = "MSH|^~\\&|ADT|H|E|H|20240102120000||ADT^A01|C9|P|2.5\rPID|1||MRN9||DOE^JOHN"
    oru = "MSH|^~\\&|RIS|H|R|H|20240102120000||ORU^R01|C{k}|P|2.5"
    bad = []
    for _ in range(n_bad):
        k = plan.uid()
        m = oru.format(k=k)
        bad.append(r.choice([
            f"PID|1||{k}\rOBR|1|P{k}|F{k}\rOBX|1|TX|x|1|FINDINGS: clear.".encode(),  # no MSH
            adt.encode(),  # not a result
            f"{m}\rPID|1||{k}\rOBX|1|TX|x|1|FINDINGS: clear.".encode(),  # no OBR
            f"{m}\rOBR|1||\rOBX|1|TX|x|1|FINDINGS: clear.".encode(),  # no order number
            f"{m}\rOBR|1|P{k}|F{k}\rOBX|1|TX|x|1|caf\xe9".encode("latin-1"),  # not UTF-8
            f"{m}\rOBR|1|P{k}|F{k}".encode(),  # no text
            f"{m}\rOBR|1|P{k}|F{k}\rOBX|1|TX|x|1|".encode() + BIG,  # oversized
            b"hello world",
        ]))  # fmt: skip
        plan.add_bad(inp)
    return b"\n".join(plan.shuffled(good, bad)) + b"\n"


# ---- OpenI and MIMIC-CXR archives and trees ------------------------------------------------------


def tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"", **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if not kw else 0
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if data and not kw else None)


def xml_doc(plan: Plan, inp: Path, c) -> tuple[int, bytes]:
    num = plan.uid()
    plan.good[str(inp)].add(f"openi:{num}")
    return num, openi_xml(c, num, plan.r).encode()


def tgz_records(plan: Plan, inp: Path, outside: Path, n_good: int, n_bad: int) -> bytes:
    r = plan.r
    good = [("doc", *xml_doc(plan, inp, c)) for c in cases(r, n_good)]
    xxe = (f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{outside}/secret.txt">]>'
           "<eCitation>&x;</eCitation>").encode()  # fmt: skip
    bad = []
    for _ in range(n_bad):
        k = plan.uid()
        bad.append(r.choice([
            ("doc", k, b"<eCitation><AbstractText Label='FINDINGS'>x</eCitation>"),  # bad XML
            ("doc", k, xxe),
            ("doc", k, b"<eCitation>\xff\xfe</eCitation>"),  # not UTF-8
            ("name", f"ecgen-radiology/n{k}.xml", b'<eCitation><AbstractText Label="F">x'
             b"</AbstractText></eCitation>"),  # no report id
            ("name", f"ecgen-radiology/{k}.txt", b"notes"),
            ("name", f"../{k}.xml", b"<eCitation/>"),  # unsafe member names
            ("name", f"/abs/{k}.xml", b"<eCitation/>"),
            ("name", f"ecgen-radiology/{k}.xml", b"<eCitation>" + BIG + b"</eCitation>"),
            ("link", f"ecgen-radiology/{k}.xml", f"{outside}/secret.xml"),
            ("link", f"ecgen-radiology/{k}.xml", "../../outside/secret.xml"),
            ("link", f"ecgen-radiology/{k}.xml", "1.xml"),  # inside: never followed either
            ("fifo", f"ecgen-radiology/{k}.xml", None),
        ]))  # fmt: skip
        plan.add_bad(inp)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        tar_member(tf, "ecgen-radiology", type=tarfile.DIRTYPE)
        for kind, a, b in plan.shuffled(good, bad):
            if kind == "doc":
                tar_member(tf, f"ecgen-radiology/{a}.xml", b)
            elif kind == "name":
                tar_member(tf, a, b)
            elif kind == "link":
                tar_member(tf, a, type=tarfile.SYMTYPE, linkname=b)
            else:
                tar_member(tf, a, type=tarfile.FIFOTYPE)
    return buf.getvalue()


def mimic_doc(plan: Plan, inp: Path, c) -> tuple[str, bytes]:
    k = plan.uid()
    plan.good[str(inp)].add(f"mimic:s{50_000_000 + k}")
    return report_path(10_000_000 + k, 50_000_000 + k), mimic_text(c, plan.r).encode()


def bad_report(plan: Plan) -> tuple[str, bytes]:
    k = plan.uid()
    name = report_path(10_000_000 + k, 50_000_000 + k)
    return name, plan.r.choice([
        "FINDINGS: temp 38.9°C, café.\nIMPRESSION: none.\n".encode("latin-1"),
        b"   \n",  # no text
        b"FINDINGS: " + BIG,  # oversized
    ])  # fmt: skip


def zip_records(plan: Plan, inp: Path, outside: Path, n_good: int, n_bad: int) -> bytes:
    r = plan.r
    good = [mimic_doc(plan, inp, c) for c in cases(r, n_good, "___")]
    bad = []
    for _ in range(n_bad):
        k = plan.uid()
        bad.append(r.choice([
            bad_report(plan),
            (f"../evil/p{k}/s{k}.txt", b"FINDINGS: x"),
            (f"/abs/files/p10/p{k}/s{k}.txt", b"FINDINGS: x"),
            (f"README{k}.txt", b"about"),
            ("link", report_path(10_000_000 + k, 50_000_000 + k), f"{outside}/secret.txt"),
        ]))  # fmt: skip
        plan.add_bad(inp)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for item in plan.shuffled(good, bad):
            if item[0] == "link":
                info = zipfile.ZipInfo(item[1])
                info.external_attr = 0o120777 << 16  # a symlink member: its data is the target
                z.writestr(info, item[2])
            else:
                z.writestr(*item)
    return buf.getvalue()


def mimic_tree(plan: Plan, root: Path, outside: Path, n_good: int, n_bad: int) -> None:
    r = plan.r
    docs = [mimic_doc(plan, root, c) for c in cases(r, n_good, "___")]
    for name, data in docs:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    folders = sorted({(root / name).parent for name, _ in docs})
    for _ in range(n_bad):
        kind = r.choice(["report", "notes", "folder", "out", "dangling", "fifo", "misc"])
        if kind == "report":
            name, data = bad_report(plan)
            p = root / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        else:
            p = r.choice(folders) / f"s{plan.uid()}.txt"
            if kind == "notes":
                p = p.with_name(f"notes{plan.n}.txt")
                p.write_text("not a report")
            elif kind == "folder":
                p = p.with_name(f"extra{plan.n}")
                (p / "s1.txt").parent.mkdir()
                (p / "s1.txt").write_text("FINDINGS: never read")
            elif kind == "out":
                p.symlink_to(outside / "secret.txt")
            elif kind == "dangling":
                p.symlink_to(p.with_name("missing.txt"))
            elif kind == "fifo":
                os.mkfifo(p)
            else:  # a file outside a patient folder
                p = root / "files" / "p10" / f"misc{plan.n}.txt"
                p.write_text("x")
        plan.add_bad(root, p)
    (root / "README.txt").write_text("about this export")  # inside the tree: a record
    (root / "files" / "p10" / "loop").symlink_to(root / "files")
    (root / "files" / "p19").symlink_to(outside)
    for name in ("README.txt", "files/p10/loop", "files/p19"):
        plan.add_bad(root, root / name)


def openi_folder(plan: Plan, d: Path, outside: Path, n_good: int) -> None:
    d.mkdir(parents=True)
    for c in cases(plan.r, n_good):
        num, data = xml_doc(plan, d, c)
        (d / f"{num}.xml").write_bytes(data)
    (d / "bad.xml").write_bytes(b"<eCitation><AbstractText>")
    (d / "notes.txt").write_text("not a report")
    (d / "out.xml").symlink_to(outside / "secret.xml")
    (d / "big.xml").write_bytes(b"<eCitation>" + BIG + b"</eCitation>")
    os.mkfifo(d / "fifo.xml")
    for name in ("bad.xml", "notes.txt", "out.xml", "big.xml", "fifo.xml"):
        plan.add_bad(d, d / name)


def hl7_folder(plan: Plan, d: Path, outside: Path) -> None:
    (d / "sub").mkdir(parents=True)
    (d / "batch.hl7").write_bytes(hl7_records(plan, d, 20, 20))
    (d / "sub" / "more.hl7").write_bytes(hl7_records(plan, d, 10, 0))
    (d / "notes.txt").write_text("not a message")
    (d / "out.hl7").symlink_to(outside / "secret.hl7")
    (d / "empty.hl7").write_bytes(b"")
    os.mkfifo(d / "pipe.hl7")
    for name in ("notes.txt", "out.hl7", "empty.hl7", "pipe.hl7"):
        plan.add_bad(d, d / name)
    plan.bad[str(d)] -= 20  # the batch's malformed messages are rows of batch.hl7
    plan.bad[str(d / "batch.hl7")] += 20


def cut(plan: Plan, p: Path, data: bytes, ids: set[str]) -> None:
    """A gzip file cut in half: the records before the cut arrive, then one `truncated` row."""
    gz = gzip.compress(data)
    p.write_bytes(gz[: len(gz) // 2])
    plan.maybe[str(p)] = ids


def build(tmp: Path, marker: str) -> tuple[Path, Plan]:
    r = random.Random(SEED)
    plan = Plan(r)
    root, outside = tmp / "in", tmp / "outside"
    outside.mkdir()
    # files outside the input root, each a valid record carrying the marker: never to be read
    (outside / "secret.txt").write_text(f"FINDINGS: {marker} lungs.\nIMPRESSION: {marker}.\n")
    (outside / "secret.csv").write_text(csv_text([(marker, "", "", "", "", "", marker, marker)]))
    (outside / "secret.xml").write_text(
        openi_document(1, {"FINDINGS": marker, "IMPRESSION": marker})
    )
    (outside / "secret.hl7").write_text(
        f"{msh('M', '2024')}\rOBR|1|{marker}|{marker}\rOBX|1|TX|x|1|{marker}"
    )
    root.mkdir()
    (root / "csv").mkdir()
    for name, n_good, n_bad in (("a.csv", 100, 120), ("b.csv.gz", 60, 80)):
        data = csv_records(plan, root / "csv" / name, n_good, n_bad)
        (root / "csv" / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    (root / "fhir").mkdir()
    for name, n_good, n_bad in (("a.ndjson", 100, 150), ("b.ndjson.gz", 50, 100)):
        data = ndjson_records(plan, root / "fhir" / name, n_good, n_bad)
        (root / "fhir" / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    (root / "fhir" / "bundle.json").write_bytes(bundle(plan, root / "fhir" / "bundle.json", 20, 15))
    (root / "hl7").mkdir()
    (root / "hl7" / "oru.hl7").write_bytes(hl7_records(plan, root / "hl7" / "oru.hl7", 120, 180))
    (root / "openi").mkdir()
    tgz = root / "openi" / "NLMCXR_reports.tgz"
    tgz.write_bytes(tgz_records(plan, tgz, outside, 100, 150))
    z = root / "mimic-cxr-reports.zip"
    z.write_bytes(zip_records(plan, z, outside, 60, 80))
    mimic_tree(plan, root / "mimic", outside, 100, 100)
    deep = root / "deep" / "er"  # folders at the depth where a folder is one input
    openi_folder(plan, deep / "openi", outside, 15)
    hl7_folder(plan, deep / "hl7", outside)
    # odd files at the top, each one quarantine row
    odd = root / "odd"
    odd.mkdir()
    (odd / "notes.bin").write_bytes(b"\x00\x01\x02")
    (odd / "empty.txt").write_bytes(b"")
    (odd / "empty.csv").write_bytes(b"")
    (odd / "empty.ndjson").write_bytes(b"")
    (odd / "empty.hl7").write_bytes(b"")
    (odd / "foreign.csv").write_text("accession,report\nA1,FINDINGS: clear\n")
    (odd / "noheader.csv").write_bytes(csv_line(1, cases(r, 1)[0]))
    (odd / "broken.json").write_text('{"resourceType": "DiagnosticReport", "id": ')
    (odd / "deep.json").write_text(
        '{"resourceType": "DiagnosticReport", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    )
    (odd / "junk.tgz").write_bytes(b"this is no tar")
    (odd / "leak.csv").symlink_to(outside / "secret.csv")
    (odd / "outdir").symlink_to(outside)
    (odd / "dangling.ndjson").symlink_to(odd / "nothing.ndjson")
    (odd / "loop1").symlink_to(odd / "loop2")
    (odd / "loop2").symlink_to(odd / "loop1")
    (odd / "up").symlink_to(root)
    os.mkfifo(odd / "pipe.csv")
    for p in sorted(odd.iterdir()):
        plan.add_bad(p)
    # truncated gzip files: a prefix of their records arrives
    data = csv_records(plan, odd / "cut.csv.gz", 300, 0)
    cut(plan, odd / "cut.csv.gz", data, plan.good.pop(str(odd / "cut.csv.gz")))
    data = ndjson_records(plan, odd / "cut.ndjson.gz", 300, 0)
    cut(plan, odd / "cut.ndjson.gz", data, plan.good.pop(str(odd / "cut.ndjson.gz")))
    return root, plan


@pytest.mark.slow
def test_fuzz_ingest_good_records_arrive_bad_ones_are_rows_counts_add_up(spark, tmp_path, capfd):
    from radgpt import cli, table
    from radgpt.ingest.counts import balance
    from radgpt.ingest.sources.base import REASONS

    tmp = tmp_path.resolve()
    marker = f"ZQX{random.Random(SEED).getrandbits(64):016x}MARK"
    root, plan = build(tmp, marker)
    assert sum(plan.bad.values()) >= 1000, "too few malformed records"
    rc = cli.main(["ingest", "--set", f"paths.root={tmp / 'var'}", "--set",
                   f"ingest.max_member_bytes={CAP}", "--set", "ingest.csv_rows_per_unit=37",
                   str(root)])  # fmt: skip
    out, err = capfd.readouterr()
    seed = f"(RADGPT_FUZZ_SEED={SEED})"
    assert rc == 0, seed
    assert "Traceback" not in out + err, seed
    t = table.read(tmp / "var" / "table", "reports")
    q = table.read(tmp / "var" / "quarantine", "quarantine")
    ids = set(t["report_id"].to_pylist())
    good = set().union(*plan.good.values())
    assert good <= ids, (seed, sorted(good - ids)[:10])
    maybe = set().union(*plan.maybe.values())
    assert ids - good <= maybe, (seed, sorted(ids - good - maybe)[:10])
    for path, written in plan.maybe.items():  # records before the cut arrive
        assert ids & written, (seed, path)
    # every malformed record is a quarantine row of its file (a cut file: its `truncated` row)
    rows = Counter(q["source_uri"].to_pylist())
    want = plan.bad + Counter(dict.fromkeys(plan.maybe, 1))
    assert {u: n for u, n in rows.items()} == {u: n for u, n in want.items() if n}, seed
    assert set(q["reason"].to_pylist()) <= set(REASONS) | {"duplicate_report_id", "unknown_format"}
    assert {"bad_csv", "bad_json", "bad_hl7", "bad_xml", "bad_encoding", "too_large",
            "not_a_report", "unsafe_path", "symlink_outside_root", "symlink_loop",
            "dangling_symlink", "special_file", "empty_file", "bad_header", "truncated",
            "skipped_resource", "invalid_fhir", "no_text", "unreadable", "unknown_format",
            "duplicate_report_id"} <= set(q["reason"].to_pylist()), seed  # fmt: skip
    # every input's counts add up, and match what was written
    (m,) = table.manifests(tmp / "var" / "table")
    by_file = m["counts"]["by_file"]
    assert set(by_file) == set(plan.bad_in) | set(plan.maybe), seed
    assert all(balance(c) == 0 for c in by_file.values()), seed
    for inp, n_bad in plan.bad_in.items():
        c = by_file[inp]
        assert (c["new"], c["quarantined"]) == (len(plan.good.get(inp, ())), n_bad), (seed, inp)
        assert c["seen"] == c["new"] + n_bad, (seed, inp)
    for inp, written in plan.maybe.items():
        c = by_file[inp]
        assert c["new"] == len(ids & written) and c["quarantined"] == 1, (seed, inp)
    # nothing outside the input root was read
    dump = json.dumps([t.to_pylist(), q.to_pylist()], default=str)
    assert marker not in dump and marker not in out + err, seed
