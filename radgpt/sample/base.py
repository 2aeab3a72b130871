"""What the per-format writers of the sample share: seeded streams, exam times, gzip, counts.

Each writer module (mimic, openi, csvx, fhir, hl7: the formats of radgpt.ingest.sources) renders
one record of its format from a `Case` (radgpt.sample.text) and writes its folder with
`write_<fmt>(dir, n, seed, bad) -> manifest entry`.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import random
from collections import Counter
from collections.abc import Iterable

from radgpt.sample.text import DEFECTS, Case


def rng(seed: int, fmt: str) -> random.Random:
    """One independent stream per format: adding a format never changes the others."""
    return random.Random(f"radgpt-sample:{seed}:{fmt}")


def draw_time(r: random.Random) -> dt.datetime:
    """An exam time in 2014-2022, UTC, minute resolution."""
    return dt.datetime(2014, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=r.randrange(4_730_000))


def gzip_bytes(data: bytes) -> bytes:
    """gzip with MTIME 0 and no file name: the same bytes for the same data."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def csv_table(header: tuple[str, ...], rows: Iterable[Iterable]) -> str:
    """A header and rows, quoted where needed (csv module), "\n" line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def stats(cases: list[Case]) -> dict:
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


def flat(text: str | None) -> str | None:
    """OpenI/CSV style: numbered impression items on one line."""
    return None if text is None else text.replace("\n", " ")


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
