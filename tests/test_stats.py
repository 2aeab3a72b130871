"""Stats over a committed drafts table: counts, flag rates, percentiles, adapters; CLI JSON output.

.venv/bin/pytest tests/test_stats.py -q
"""

from __future__ import annotations

import json

from test_writeback import rows  # same hand-made draft rows (tests/ is on sys.path)

from radgpt import cli
from radgpt.evaluation.stats import load, summarize
from radgpt.writeback import drafts


def make(tmp_path):
    d = tmp_path / "drafts"
    a = rows(6)  # flags: truncated on i % 3 == 0 -> ids 0 and 3
    for i, r in enumerate(a):
        r["latency_ms"] = float(10 * (i + 1))
    b = rows(4, "draft-b", "2024-05-02", start=6)
    b[0]["source"], b[0]["adapter_id"] = "mimic", None
    drafts.commit_drafts(a, d, "draft-a")
    drafts.commit_drafts(b, d, "draft-b")
    return d


def test_summarize(tmp_path):
    s = summarize(load(make(tmp_path)))
    got = {(r["run_date"], r["source"]): r for r in s.to_dicts()}
    assert set(got) == {("2024-05-01", "openi"), ("2024-05-02", "mimic"), ("2024-05-02", "openi")}
    a = got[("2024-05-01", "openi")]
    assert (a["n"], a["runs"], a["flagged_rate"], a["rate_truncated"]) == (6, 1, 0.3333, 0.3333)
    assert a["rate_empty"] == 0.0 and a["adapters"] == ["lora-x"]
    assert (a["latency_ms_p50"], a["latency_ms_p90"], a["latency_ms_p99"]) == (
        35.0,
        55.0,
        59.5,
    )  # linear, as numpy
    assert a["output_tokens_p50"] == 5.0
    m = got[("2024-05-02", "mimic")]
    assert (m["n"], m["adapters"], m["rate_truncated"]) == (1, ["base"], 1.0)  # id 6: truncated


def test_cli_json_and_table(tmp_path, capsys):
    d = make(tmp_path)
    assert cli.main(["stats", "--drafts", str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(r["n"] for r in out) == 10
    assert cli.main(["stats", "--drafts", str(d)]) == 0
    assert "flagged_rate" in capsys.readouterr().out
    assert cli.main(["stats", "--drafts", str(tmp_path / "none")]) == 0
    assert "no committed drafts" in capsys.readouterr().out


def test_observations_behind_the_flags_per_night(tmp_path):
    from radgpt.evaluation.stats import observations

    d = tmp_path / "drafts"
    a = rows(4)
    a[0] |= {"flags": ["omits_finding"], "flag_observations": ["omits_finding:Pleural Effusion"]}
    a[1] |= {"flags": ["omits_finding", "adds_finding"],
             "flag_observations": ["omits_finding:Pleural Effusion", "adds_finding:Edema"]}  # fmt: skip
    drafts.commit_drafts(a, d, "draft-a")
    drafts.commit_drafts(rows(2, "draft-b", "2024-05-02", start=4), d, "draft-b")
    df = load(d)
    s = {(r["run_date"], r["source"]): r for r in summarize(df).to_dicts()}
    assert s[("2024-05-01", "openi")]["rate_omits_finding"] == 0.5
    assert s[("2024-05-01", "openi")]["rate_adds_finding"] == 0.25
    got = [(r["run_date"], r["flag"], r["observation"], r["n"], r["rate"])
           for r in observations(df).to_dicts()]  # fmt: skip
    assert got == [("2024-05-01", "adds_finding", "Edema", 1, 0.25),
                   ("2024-05-01", "omits_finding", "Pleural Effusion", 2, 0.5)]  # fmt: skip


def test_cli_observations(tmp_path, capsys):
    d = tmp_path / "drafts"
    a = rows(2)
    a[0] |= {"flags": ["adds_finding"], "flag_observations": ["adds_finding:Edema"]}
    drafts.commit_drafts(a, d, "draft-a")
    assert cli.main(["stats", "--drafts", str(d), "--observations", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [(r["flag"], r["observation"], r["n"], r["rate"]) for r in got] == [
        ("adds_finding", "Edema", 1, 0.5)
    ]
    assert cli.main(["stats", "--drafts", str(d), "--observations"]) == 0
    assert "Edema" in capsys.readouterr().out
