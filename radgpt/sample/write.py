"""`radgpt sample`: synthetic chest X-ray reports in every input format the ingest reads (issue 2).

    radgpt sample --out var/sample --n 200 --seed 0     # default --out: config paths.sample
    radgpt sample --no-bad                              # leave out the malformed inputs

Writes under DIR (n well-formed reports per format, plus a few malformed inputs unless --no-bad):
    mimic/files/pNN/pNNNNNNNN/sNNNNNNNN.txt, mimic/mimic-cxr-2.0.0-split.csv.gz
    openi/NLMCXR_reports.tgz (ecgen-radiology/<n>.xml), csv/reports.csv (IU columns)
    fhir/diagnosticreports.ndjson, fhir/bundle.json, hl7/oru.hl7 (ORU^R01 v2.5)
    MANIFEST.json: counts, deliberately ineligible per cohort rule, bad inputs per kind, seed,
    generator version and the sha256 of every file.
Byte-identical for the same (n, seed, bad): seeded RNG per format, fixed tar/gzip mtimes.
The text comes from radgpt.sample.text (templates + seeded randomness), never from a dataset.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import random
import shutil
import tarfile
import textwrap
import uuid
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import escape

from radgpt.sample.text import DEFECTS, Case, draw_case, draw_cases

log = logging.getLogger("radgpt.sample.write")
GENERATOR = "radgpt.sample"
GENERATOR_VERSION = "sample-v1"  # bump when the output for a given seed changes
EPOCH = 1372636800  # 2013-07-01 UTC: fixed mtime of tar members (gzip headers carry mtime 0)
ACCESSION_SYSTEM = "http://hospital.example.org/fhir/sid/accession"
MRN_SYSTEM = "http://hospital.example.org/fhir/sid/mrn"
LOINC_CXR = {"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2V"}
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
ACSN = {"coding": [{"system": V2 + "0203", "code": "ACSN"}]}  # identifier type: accession
RAD = {"coding": [{"system": V2 + "0074", "code": "RAD", "display": "Radiology"}]}


def _rng(seed: int, fmt: str) -> random.Random:
    """One independent stream per format: adding a format never changes the others."""
    return random.Random(f"radgpt-sample:{seed}:{fmt}")


def _when(r: random.Random) -> dt.datetime:
    """An exam time in 2014-2022, UTC, minute resolution."""
    return dt.datetime(2014, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=r.randrange(4_730_000))


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _stats(cases: list[Case]) -> dict:
    """Per-format counts of the cases: normal/abnormal, defects per cohort rule, duplicates."""
    d = Counter(c.defect for c in cases)
    # exact repeats among eligible pairs (whitespace-normalized): injected + chance repeats
    pairs = Counter(
        (" ".join(c.findings.split()), " ".join(c.impression.split()))
        for c in cases
        if c.defect in (None, "duplicate") and c.findings and c.impression
    )
    return {
        "reports": len(cases),
        "normal": sum(not c.positives for c in cases),
        "abnormal": sum(bool(c.positives) for c in cases),
        "ineligible": {k: d[k] for k in DEFECTS},
        "duplicates": sum(v - 1 for v in pairs.values()),
        "duplicates_injected": d["duplicate"],
    }


def _flat(text: str | None) -> str | None:
    """OpenI/CSV style: numbered impression items on one line."""
    return None if text is None else text.replace("\n", " ")


# --- MIMIC-CXR -------------------------------------------------------------------------------


def _section(out: list[str], header: str, text: str, alone: bool, width: int) -> None:
    """MIMIC layout: one-space indent, wrapped at `width` columns, blank " " line after."""
    paras = text.split("\n")  # numbered items stay on their own lines
    if alone:
        out += [f" {header}: ", " "]
    else:
        paras[0] = f"{header}:  {paras[0]}"
    out += [" " + ln for p in paras for ln in textwrap.wrap(p, width)]
    out.append(" ")


def mimic_text(c: Case, r: random.Random, combined: bool = False) -> str:
    """A MIMIC-CXR free-text report: FINAL REPORT preamble, header variants, wrapped lines."""
    width, alone = r.randint(66, 76), r.random() < 0.6
    out = [" " * 33 + "FINAL REPORT"]
    if r.random() < 0.85:
        out.append(f" EXAMINATION:  {c.exam}")
        out.append(" ")
    _section(out, "INDICATION" if r.random() < 0.85 else "HISTORY", c.indication, False, width)
    _section(out, "TECHNIQUE", c.technique, False, width)
    if c.comparison is not None:
        _section(out, "COMPARISON", c.comparison, False, width)
    if combined:  # no separable pair: the ingest excludes it (no_findings)
        _section(out, "FINDINGS AND IMPRESSION", f"{c.findings} {c.impression}", alone, width)
    else:
        if c.findings is not None:
            _section(out, "FINDINGS", c.findings, alone, width)
        if c.impression is not None:
            head = "CONCLUSION" if r.random() < 0.1 else "IMPRESSION"
            _section(out, head, c.impression, alone, width)
    return "\n".join(out) + "\n"


def write_mimic(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = _rng(seed, "mimic")
    cases = draw_cases(r, n, mark="___")
    pairs = Counter((c.findings, c.impression) for c in cases)
    k = max(1, n // 100) if n >= 10 else 0
    clean = [
        j for j, c in enumerate(cases) if c.defect is None and pairs[c.findings, c.impression] == 1
    ]
    combined = set(r.sample(clean, min(k, len(clean))))
    subjects: list[int] = []
    studies: set[int] = set()
    rows, splits = [], {}
    docs: list[tuple[int, int, bytes]] = []
    for j in range(n + int(bad)):
        if not subjects or r.random() < 0.6:  # a new patient, else another study of a known one
            subjects.append(r.randint(10_000_000, 19_999_999))
        subj = r.choice(subjects)
        splits.setdefault(subj, r.choices(("train", "validate", "test"), (90, 5, 5))[0])
        study = r.randint(50_000_000, 59_999_999)
        while study in studies:
            study = r.randint(50_000_000, 59_999_999)
        studies.add(study)
        if j < n:
            text = mimic_text(cases[j], r, j in combined).encode("utf-8")
        else:  # bad: latin-1 bytes (degree sign, e-acute, plus-minus) are not valid UTF-8
            c = draw_case(r, mark="___")
            c.indication = "___ year old woman, temp 38.9°C, café worker  // r/o pneumonia"
            text = mimic_text(c, r).encode("latin-1")
        docs.append((subj, study, text))
        for _ in range(r.choice((1, 1, 2, 2, 3))):  # 1-3 images (dicoms) per study
            dicom = "-".join(f"{r.getrandbits(32):08x}" for _ in range(5))
            rows.append((dicom, study, subj, splits[subj]))
    for subj, study, text in docs:
        p = d / "files" / f"p{str(subj)[:2]}" / f"p{subj}" / f"s{study}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("dicom_id", "study_id", "subject_id", "split"))
    w.writerows(rows)
    (d / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(_gzip(buf.getvalue().encode()))
    st = _stats(cases)
    st["ineligible"]["no_findings"] += len(combined)  # FINDINGS AND IMPRESSION: no pair
    by_split = Counter(splits[s] for s, _, _ in docs)
    return {
        **st,
        "combined_findings_impression": len(combined),
        "split_rows": len(rows),
        "studies_by_split": {s: by_split[s] for s in ("train", "validate", "test")},
        "bad": {"bad_encoding": int(bad)},
    }


# --- NLM Open-i (IU X-ray) eCitation XML -----------------------------------------------------


def openi_xml(c: Case, num: int, r: random.Random) -> str:
    """One ecgen-radiology/<num>.xml in the NLM Open-i eCitation layout."""

    def abstract(label: str, text: str | None) -> str:
        if not text:
            return f'            <AbstractText Label="{label}"/>'
        return f'            <AbstractText Label="{label}">{escape(text)}</AbstractText>'

    acute = [f.mesh for f in c.positives if f.acute] or [f.mesh for f in c.positives]
    minor = [f.mesh for f in c.positives if f.mesh not in acute]
    mesh = "".join(
        f"\n      <major>{escape(t)}</major>" for t in dict.fromkeys(acute or ["normal"])
    )
    mesh += "".join(f"\n      <minor>{escape(t)}</minor>" for t in dict.fromkeys(minor))
    imgs = []
    for k, view in enumerate(("PA", "Lateral")[: r.choice((1, 2, 2))], 1):
        iid = f"CXR{num}_{k}_IM-{r.randint(0, 2999):04d}-{r.randint(1001, 4004):04d}"
        imgs.append(
            f'   <parentImage id="{iid}">\n      <figureId>F{k}</figureId>\n'
            f'      <caption>Xray Chest {view}</caption>\n      <panel type="single">\n'
            f"         <url>/hadoop/storage/radiology/extract/{iid}.png</url>\n"
            "         <imgModality>7</imgModality>\n      </panel>\n   </parentImage>"
        )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{num}"/>
   <pmcId id="{num}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{num}"/>
   <licenseType>open-access</licenseType>
   <licenseURL>http://creativecommons.org/licenses/by-nc-nd/4.0/</licenseURL>
   <ccLicense>byncnd</ccLicense>
   <articleURL/>
   <articleDate>2013-08-01</articleDate>
   <articleType>XR</articleType>
   <publisher>Indiana University</publisher>
   <title>Indiana University Chest X-ray Collection</title>
   <note>The data are drawn from multiple hospital systems.</note>
   <specialty>pulmonary diseases</specialty>
   <subset>CXR</subset>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <Journal>
            <JournalIssue>
               <PubDate>
                  <Year>2013</Year>
                  <Month>08</Month>
                  <Day>01</Day>
               </PubDate>
            </JournalIssue>
         </Journal>
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
{abstract("COMPARISON", c.comparison)}
{abstract("INDICATION", c.indication)}
{abstract("FINDINGS", c.findings)}
{abstract("IMPRESSION", _flat(c.impression))}
         </Abstract>
         <Affiliation>Indiana University</Affiliation>
         <Language>eng</Language>
         <PublicationTypeList>
            <PublicationType>Radiology Report</PublicationType>
         </PublicationTypeList>
      </Article>
      <EntrezDate>2013/08/01</EntrezDate>
   </MedlineCitation>
   <MeSH>{mesh}
   </MeSH>
{chr(10).join(imgs)}
</eCitation>
"""


def _tar(members: list[tuple[str, bytes]], dirs: tuple[str, ...]) -> bytes:
    """A .tar.gz with fixed mtimes/owners: byte-identical for identical members."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name in dirs:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(ti)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write_openi(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = _rng(seed, "openi")
    cases = draw_cases(r, n, mark="XXXX")
    members, num = [], 0
    for j, c in enumerate(cases):
        num += 1 + (r.random() < 0.15)  # the public numbering has gaps
        members.append((f"ecgen-radiology/{num}.xml", openi_xml(c, num, r).encode()))
        if bad and j == n // 2:  # bad: a member cut off mid-element
            num += 1
            xml = openi_xml(draw_case(r, mark="XXXX"), num, r).encode()
            members.append((f"ecgen-radiology/{num}.xml", xml[: int(len(xml) * 0.6)]))
    d.mkdir(parents=True, exist_ok=True)
    (d / "NLMCXR_reports.tgz").write_bytes(_tar(members, ("ecgen-radiology",)))
    return {**_stats(cases), "members": len(members), "bad": {"bad_xml": int(bad)}}


# --- IU X-ray CSV export ---------------------------------------------------------------------

CSV_COLUMNS = (
    "uid",
    "MeSH",
    "Problems",
    "image",
    "indication",
    "comparison",
    "findings",
    "impression",
)
IU_IMAGES = (
    "Xray Chest PA and Lateral|Chest, 2 views, frontal and lateral|PA and lateral chest x-XXXX"
)


def write_csv(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = _rng(seed, "csv")
    cases = draw_cases(r, n, mark="XXXX")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    uid = 0
    for c in cases:
        uid += 1 + (r.random() < 0.15)
        image = "Chest, 1 view, frontal" if c.portable else r.choice(IU_IMAGES.split("|"))
        fields = (c.indication, c.comparison, c.findings, _flat(c.impression))
        w.writerow((uid, c.mesh, c.problems, image, *(x or "" for x in fields)))
    d.mkdir(parents=True, exist_ok=True)
    (d / "reports.csv").write_text(buf.getvalue(), encoding="utf-8")
    return {**_stats(cases), "bad": {}}


# --- FHIR R4 DiagnosticReport (Bulk Data NDJSON + a collection Bundle) ----------------------


def report_text(c: Case, impression: bool = True) -> str:
    """Plain-text report with section headers (FHIR presentedForm, HL7 OBX lines)."""
    parts = [f"EXAMINATION: {c.exam}", f"INDICATION: {c.indication}", f"TECHNIQUE: {c.technique}"]
    if c.comparison is not None:
        parts.append(f"COMPARISON: {c.comparison}")
    if c.findings is not None:
        parts.append(f"\nFINDINGS:\n{c.findings}")
    if impression and c.impression is not None:
        parts.append(f"\nIMPRESSION:\n{c.impression}")
    return "\n".join(parts) + "\n"


def _html(c: Case) -> str:
    """Report as XHTML paragraphs: "<p><b>HEADER:</b> text</p>" (numbered items on <br/>)."""
    secs = [("EXAMINATION", c.exam), ("INDICATION", c.indication), ("TECHNIQUE", c.technique)]
    secs += [("COMPARISON", c.comparison), ("FINDINGS", c.findings), ("IMPRESSION", c.impression)]
    return "".join(
        f"<p><b>{h}:</b> {escape(t).replace(chr(10), '<br/>')}</p>"
        for h, t in secs
        if t is not None
    )


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def fhir_report(c: Case, r: random.Random, pid: str, form: str) -> dict:
    """A DiagnosticReport; form: plain | html (presentedForm), div (text.div only), conclusion."""
    when = _when(r)
    acc = f"ACC{r.randint(10_000_000, 99_999_999)}"
    res: dict = {
        "resourceType": "DiagnosticReport",
        "id": str(uuid.UUID(int=r.getrandbits(128), version=4)),
        "identifier": [{"type": ACSN, "system": ACCESSION_SYSTEM, "value": acc}],
        "status": "final",
        "category": [RAD],
        "code": {"coding": [LOINC_CXR], "text": "XR Chest 2V"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(when),
        "issued": _iso(when + dt.timedelta(minutes=r.randint(20, 600))),
    }
    if form == "div":
        div = f'<div xmlns="http://www.w3.org/1999/xhtml">{_html(c)}</div>'
        res["text"] = {"status": "generated", "div": div}
        return res
    if form == "html":
        body, ctype = f"<html><body>{_html(c)}</body></html>", "text/html"
    else:  # conclusion: findings-only text, the impression goes to DiagnosticReport.conclusion
        body, ctype = report_text(c, impression=form == "plain"), "text/plain"
    data = base64.b64encode(body.encode()).decode()
    res["presentedForm"] = [{"contentType": ctype, "language": "en-US", "data": data}]
    if form == "conclusion" and c.impression is not None:
        res["conclusion"] = c.impression
    return res


def write_fhir(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = _rng(seed, "fhir")
    cases = draw_cases(r, n, mark=None)  # a live system: synthetic values, no de-id marks
    pids = [f"pat-{r.randint(100_000, 999_999)}" for _ in range(max(1, n // 3))]
    forms = r.choices(("plain", "html", "div", "conclusion"), (40, 20, 20, 20), k=n)
    lines = [
        json.dumps(fhir_report(c, r, r.choice(pids), f), separators=(",", ":"))
        for c, f in zip(cases, forms, strict=True)
    ]
    if bad:  # a truncated JSON line, and a resource with an unknown status and no code
        broken = json.dumps(fhir_report(draw_case(r, None), r, pids[0], "plain"))
        invalid = fhir_report(draw_case(r, None), r, pids[0], "plain")
        invalid["status"] = "bogus"
        del invalid["code"]
        lines.insert(2 * n // 3, json.dumps(invalid, separators=(",", ":")))
        lines.insert(n // 3, broken[: len(broken) // 2])
    d.mkdir(parents=True, exist_ok=True)
    (d / "diagnosticreports.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Bundle: one Patient with a handful of clean reports
    pid, m = pids[0], max(1, n // 10)
    base = "https://hospital.example.org/fhir"
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": MRN_SYSTEM, "value": f"MRN{r.randint(1_000_000, 9_999_999)}"}],
        "name": [{"family": "Synthetic", "given": ["Sample"]}],
        "gender": "female",
        "birthDate": f"{r.randint(1930, 1990)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    }
    bcases = draw_cases(r, m, mark=None, defects=False)
    bforms = r.choices(("plain", "html", "div", "conclusion"), k=m)
    reports = [fhir_report(c, r, pid, f) for c, f in zip(bcases, bforms, strict=True)]
    entries = [{"fullUrl": f"{base}/Patient/{pid}", "resource": patient}]
    entries += [{"fullUrl": f"{base}/DiagnosticReport/{x['id']}", "resource": x} for x in reports]
    bundle = {
        "resourceType": "Bundle",
        "id": f"sample-{seed}",
        "type": "collection",
        "timestamp": max(x["issued"] for x in reports),
        "entry": entries,
    }
    (d / "bundle.json").write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    st = _stats(cases)
    return {
        **st,
        "reports": n + m,
        "ndjson_reports": n,
        "bundle_reports": m,
        "forms": dict(sorted(Counter(forms + bforms).items())),
        "bad": {"bad_json": int(bad), "invalid_fhir": int(bad)},
    }


# --- HL7 v2.5 ORU^R01 ------------------------------------------------------------------------


def _hl7_escape(s: str) -> str:
    """HL7 escapes for the field/component/repetition/escape/subcomponent separators."""
    s = s.replace("\\", "\\E\\")
    return s.replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\").replace("&", "\\T\\")


def hl7_segments(c: Case, r: random.Random, k: int, when: dt.datetime) -> list[str]:
    """PID, ORC, OBR and one OBX TX per report line (wrapped at 80 columns), no MSH."""
    obs, done = when.strftime("%Y%m%d%H%M"), (when + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M")
    mrn, placer, filler = (
        r.randint(1_000_000, 9_999_999),
        f"PL{k:06d}",
        f"ACC{r.randint(10**7, 10**8 - 1)}",
    )
    sex = c.sex
    obr = ["OBR", "1", placer, filler, "36643-5^XR Chest 2V^LN", "", "", obs] + [""] * 18
    obr[22], obr[25] = done, "F"  # OBR-22 results time, OBR-25 result status F(inal)
    segs = [
        f"PID|1||{mrn}^^^GENHOSP^MR||SYNTHETIC^PATIENT||{r.randint(1930, 1990)}0101|{sex}",
        f"ORC|RE|{placer}|{filler}",
        "|".join(obr),
    ]
    code = "18782-3^Radiology Study observation (narrative)^LN"
    j = 0
    for line in report_text(c).split("\n"):
        if line == "IMPRESSION:":
            code = "19005-8^Radiology Impression (narrative)^LN"
        for part in textwrap.wrap(line, 80):
            j += 1
            segs.append(f"OBX|{j}|TX|{code}|1|{_hl7_escape(part)}||||||F")
    return segs


def write_hl7(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = _rng(seed, "hl7")
    cases = draw_cases(r, n, mark=None)
    msgs = []
    for k, c in enumerate(cases):
        when = _when(r)  # exam time; the message is sent when the report is final (+1 h)
        ts = (when + dt.timedelta(hours=1, seconds=r.randint(0, 59))).strftime("%Y%m%d%H%M%S")
        msh = f"MSH|^~\\&|RIS|GENHOSP|RADGPT|GENHOSP|{ts}||ORU^R01^ORU_R01|MSG{k:06d}|P|2.5"
        msgs.append([msh, *hl7_segments(c, r, k, when)])
        if bad and k == n // 2:  # bad: a message whose MSH segment is missing
            msgs.append(hl7_segments(draw_case(r, None), r, n + 1, _when(r)))
    d.mkdir(parents=True, exist_ok=True)
    # segments end with \r; messages are separated by \n (one message per line-ish block)
    (d / "oru.hl7").write_bytes("\n".join("\r".join(m) + "\r" for m in msgs).encode() + b"\n")
    return {**_stats(cases), "messages": len(msgs), "bad": {"bad_hl7": int(bad)}}


# --- all formats, MANIFEST.json, CLI ---------------------------------------------------------

WRITERS = {
    "mimic": write_mimic,
    "openi": write_openi,
    "csv": write_csv,
    "fhir": write_fhir,
    "hl7": write_hl7,
}


def _is_sample(out: Path) -> bool:
    try:
        return json.loads((out / "MANIFEST.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError):
        return False


def _digest(root: Path) -> dict:
    """sha256 per file; the MIMIC tree (one file per report) as a count and one combined hash."""
    files, tree, h = {}, 0, hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel, sha = p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()
        if rel.startswith("mimic/files/"):
            tree += 1
            h.update(f"{rel}\0{sha}\n".encode())
        else:
            files[rel] = {"bytes": p.stat().st_size, "sha256": sha}
    files["mimic/files/"] = {"count": tree, "sha256": h.hexdigest()}
    return files


def write_sample(out: Path, n: int = 200, seed: int = 0, bad: bool = True) -> dict:
    """Write every format under `out` (replacing an earlier sample there); returns the manifest."""
    from radgpt.runtime import write_json_atomic

    out = Path(out)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if out.exists() and any(out.iterdir()) and not _is_sample(out):
        raise FileExistsError(
            f"{out} is not empty and holds no radgpt sample; refusing to overwrite"
        )
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        formats = {name: fn(tmp / name, n, seed, bad) for name, fn in WRITERS.items()}
        manifest = {
            "generator": GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "n": n,
            "bad_inputs": bad,
            "formats": formats,
            "totals": {
                "reports": sum(f["reports"] for f in formats.values()),
                "bad": sum(sum(f["bad"].values()) for f in formats.values()),
                "ineligible": sum(sum(f["ineligible"].values()) for f in formats.values()),
            },
            "files": _digest(tmp),
        }
        write_json_atomic(tmp / "MANIFEST.json", manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
