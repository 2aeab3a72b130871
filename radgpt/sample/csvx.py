"""The IU X-ray CSV export in the sample: csv/reports.csv with the IU columns (CSV_COLUMNS).

    csv_text([csv_row(uid, case, image), ...])    # header + rows, "\n" line ends
    write_csv(dir, n, seed, bad)

The reader is radgpt.ingest.sources.csvx (named so that it does not shadow the stdlib csv).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from radgpt.sample.base import csv_table, flat, rng, stats
from radgpt.sample.text import Case, draw_cases

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


def csv_row(uid: int, c: Case, image: str) -> tuple:
    """A case as a row of CSV_COLUMNS: IU MeSH/Problems, sections ("" when absent)."""
    fields = (c.indication, c.comparison, c.findings, flat(c.impression))
    return (uid, c.mesh, c.problems, image, *(x or "" for x in fields))


def csv_text(rows: Iterable[Iterable]) -> str:
    """The CSV_COLUMNS header and `rows`, quoted where needed, "\\n" line ends."""
    return csv_table(CSV_COLUMNS, rows)


def write_csv(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = rng(seed, "csv")
    cases = draw_cases(r, n, mark="XXXX")
    rows, uid = [], 0
    for c in cases:
        uid += 1 + (r.random() < 0.15)
        image = "Chest, 1 view, frontal" if c.portable else r.choice(IU_IMAGES.split("|"))
        rows.append(csv_row(uid, c, image))
    d.mkdir(parents=True, exist_ok=True)
    (d / "reports.csv").write_text(csv_text(rows), encoding="utf-8")
    return {**stats(cases), "bad": {}}
