"""MIMIC-CXR in the sample: free-text reports under files/pNN/pNNNNNNNN/sNNNNNNNN.txt + the split file.

    mimic_report(case)                      # one report, the layout chosen by the arguments
    write_mimic(dir, n, seed, bad)          # files/... and mimic-cxr-2.0.0-split.csv.gz

The reader is radgpt.ingest.sources.mimic.
"""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from radgpt.sample.base import csv_table, gzip_bytes, rng, stats
from radgpt.sample.text import Case, draw_case, draw_cases

SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")


def _section(out: list[str], header: str, text: str, alone: bool, width: int) -> None:
    """MIMIC layout: one-space indent, wrapped at `width` columns, blank " " line after."""
    paras = text.split("\n")  # numbered items stay on their own lines
    if alone:
        out += [f" {header}: ", " "]
    else:
        paras[0] = f"{header}:  {paras[0]}"
    out += [" " + ln for p in paras for ln in textwrap.wrap(p, width)]
    out.append(" ")


def mimic_report(
    c: Case,
    width: int = 72,
    alone: bool = True,
    exam: bool = True,
    indication: str = "INDICATION",
    impression: str = "IMPRESSION",
    combined: bool = False,
) -> str:
    """A MIMIC-CXR free-text report: FINAL REPORT preamble, wrapped at `width` columns.

    alone: FINDINGS/IMPRESSION headers on a line of their own (else the text follows the header);
    exam: an EXAMINATION line; indication/impression: those sections' headers (HISTORY,
    CONCLUSION); combined: one FINDINGS AND IMPRESSION section (no separable pair).
    """
    out = [" " * 33 + "FINAL REPORT"]
    if exam:
        out.append(f" EXAMINATION:  {c.exam}")
        out.append(" ")
    _section(out, indication, c.indication, False, width)
    _section(out, "TECHNIQUE", c.technique, False, width)
    if c.comparison is not None:
        _section(out, "COMPARISON", c.comparison, False, width)
    if combined:  # no separable pair: the ingest excludes it (no_findings)
        _section(out, "FINDINGS AND IMPRESSION", f"{c.findings} {c.impression}", alone, width)
    else:
        if c.findings is not None:
            _section(out, "FINDINGS", c.findings, alone, width)
        if c.impression is not None:
            _section(out, impression, c.impression, alone, width)
    return "\n".join(out) + "\n"


def mimic_text(c: Case, r: random.Random, combined: bool = False) -> str:
    """`mimic_report` with a layout drawn from `r`: width, header variants."""
    width, alone = r.randint(66, 76), r.random() < 0.6
    exam = r.random() < 0.85
    indication = "INDICATION" if r.random() < 0.85 else "HISTORY"
    impression = "IMPRESSION"
    if not combined and c.impression is not None and r.random() < 0.1:
        impression = "CONCLUSION"
    return mimic_report(c, width, alone, exam, indication, impression, combined)


def report_path(subject: int, study: int) -> str:
    """A report's path under the MIMIC-CXR root: files/p10/p10000032/s50414267.txt."""
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt"


def write_reports(root: Path, docs: Iterable[tuple[int, int, bytes]]) -> Path:
    """(subject, study, report bytes) -> the files/ tree under `root`."""
    for subject, study, data in docs:
        p = root / report_path(subject, study)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def split_csv(rows: Iterable[tuple]) -> str:
    """mimic-cxr-2.0.0-split.csv: one (dicom_id, study_id, subject_id, split) row per image."""
    return csv_table(SPLIT_COLUMNS, rows)


def write_mimic(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = rng(seed, "mimic")
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
    write_reports(d, docs)
    (d / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(gzip_bytes(split_csv(rows).encode()))
    st = stats(cases)
    st["ineligible"]["no_findings"] += len(combined)  # FINDINGS AND IMPRESSION: no pair
    by_split = Counter(splits[s] for s, _, _ in docs)
    return {
        **st,
        "combined_findings_impression": len(combined),
        "split_rows": len(rows),
        "studies_by_split": {s: by_split[s] for s in ("train", "validate", "test")},
        "bad": {"bad_encoding": int(bad)},
    }
