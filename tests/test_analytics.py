"""docs/analytics.md runs as written: polars and DuckDB read the tables with a plain `**` glob.

.venv/bin/pytest tests/test_analytics.py -q
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radgpt import table
from radgpt.config import load_config
from radgpt.ingest.run import quarantine_root, run_ingest
from radgpt.sample.write import write_sample
from radgpt.writeback.drafts import commit_drafts, read_drafts

DOC = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    """A real var/: the sample ingested (reports + quarantine) and drafts for 5 reports."""
    root = tmp_path_factory.mktemp("var")
    write_sample(root / "sample", n=8, seed=1)
    cfg = load_config(None, {"paths.root": str(root)}, env={})
    run_ingest(cfg, spark=spark)
    from test_writeback import rows

    reports = table.read_reports(cfg).column("report_id").to_pylist()[:5]
    drafts = rows(5)
    for r, rid in zip(drafts, reports, strict=True):
        r["report_id"] = rid
    commit_drafts(drafts, cfg.path("drafts"), "draft-a")
    return root, cfg


def test_polars_blocks(root):
    root, cfg = root
    ns: dict = {}
    for code in blocks("python"):
        exec(code.replace("var/", f"{root}/"), ns)
    reports = table.read_reports(cfg)
    assert ns["by_split"]["n"].sum() == reports.num_rows > 0
    assert set(ns["by_split"]["split"]) == set(reports.column("split").to_pylist())
    assert ns["flag_rates"]["drafts"].sum() == read_drafts(cfg.path("drafts")).num_rows == 5
    assert ns["side_by_side"].height == 5
    q = table.read(quarantine_root(cfg), "quarantine")
    assert ns["reasons"]["n"].sum() == q.num_rows > 0  # the sample's bad inputs


def test_duckdb_blocks(root):
    import duckdb

    root, cfg = root
    splits, flags, reasons = (
        duckdb.sql(sql.replace("var/", f"{root}/")).fetchall() for sql in blocks("sql")
    )
    assert sum(r[2] for r in splits) == table.read_reports(cfg).num_rows
    assert [r[1] for r in flags] == [5]  # one night, 5 drafts
    assert sum(r[1] for r in reasons) == table.read(quarantine_root(cfg), "quarantine").num_rows
