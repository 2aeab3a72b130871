"""Review packets: blinded export, import with unblinding and kappa, and the HTML page driven in
headless Chromium over the DevTools protocol (skips when Debian's `chromium` is not installed).

.venv/bin/pytest tests/test_review.py -q
"""

import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_evaluate import DRAFTS, commit_drafts, draft_rows, report_rows, write_reports

from radgpt.cli import main
from radgpt.evaluation.review import METRICS, read_ratings, run_import, summarize, unblind


def export(tmp_path, *flags: str) -> tuple[Path, dict, list[str]]:
    """A committed reports + drafts table, `radgpt review export ... <flags>` into
    tmp_path/packet: (packet dir, its key, the drafted test report ids)."""
    data, drafts = tmp_path / "table", tmp_path / "drafts"
    rows = report_rows()
    write_reports(data, rows)
    ids = [r["report_id"] for r in rows if r["split"] == "test" and r["eligible"]]
    commit_drafts(draft_rows(ids, DRAFTS), drafts, "draft-test")
    out = tmp_path / "packet"
    assert main(["review", "export", "--drafts", str(drafts), "--data", str(data), "--seed", "3",
                 "--out", str(out), *flags]) == 0  # fmt: skip
    return out, json.loads((tmp_path / "packet.key.json").read_text()), ids


@pytest.fixture
def packet(tmp_path):
    """An exported packet (k=4 reports x 3 systems)."""
    out, key, _ = export(tmp_path, "-k", "4", "--baselines", "nn")
    return out, tmp_path / "packet.key.json", key


def fill(packet_csv, dest, rater, score):
    """A rater fills the packet CSV in a spreadsheet: score(i, metric) for item i."""
    df = pd.read_csv(packet_csv, dtype=str, keep_default_na=False)
    df["rater"] = rater
    for j, m in enumerate(METRICS):
        df[m] = [score(i, j) for i in range(len(df))]
    df.to_csv(dest, index=False)
    return dest


def qwk(a, b, n=5):
    """Quadratic-weighted kappa by its definition: 1 - sum(W*O) / sum(W*E)."""
    o = np.zeros((n, n))
    for x, y in zip(a, b, strict=True):
        o[x - 1, y - 1] += 1
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    w = np.array([[(i - j) ** 2 for j in range(n)] for i in range(n)])
    return 1 - (w * o).sum() / (w * e).sum()


def test_export_is_blinded_shuffled_and_seeded(packet, tmp_path):
    out, key_path, key = packet
    assert sorted(p.name for p in out.iterdir()) == ["packet.csv", "packet.html"]  # key is outside
    items = list(csv.DictReader(open(out / "packet.csv")))
    assert len(items) == 12 == len(key["items"]) and key["k"] == 4
    assert key["systems"] == ["reference", "draft", "nn"]
    assert {v["system"] for v in key["items"].values()} == {"reference", "draft", "nn"}
    # blinded: no system names or report ids in the packet files
    for f in ("packet.csv", "packet.html"):
        text = (out / f).read_text()
        assert "draft-test" not in text and '"system"' not in text and "openi:" not in text
    # shuffled: the same report's items are not all adjacent
    rids = [key["items"][it["item_id"]]["report_id"] for it in items]
    assert rids != sorted(rids)
    # the reference item shows the reference Impression
    ref = next(it for it in items if key["items"][it["item_id"]]["system"] == "reference")
    rows = {r["report_id"]: r for r in report_rows()}
    assert ref["impression"] == rows[key["items"][ref["item_id"]]["report_id"]]["impression"]
    # seeded: the same seed samples the same reports in the same order
    data, drafts = tmp_path / "table", tmp_path / "drafts"
    main(["review", "export", "--drafts", str(drafts), "--data", str(data), "-k", "4", "--seed", "3",
          "--baselines", "nn", "--out", str(tmp_path / "p2")])  # fmt: skip
    key2 = json.loads((tmp_path / "p2.key.json").read_text())
    assert list(key2["items"].values()) == list(key["items"].values())
    with pytest.raises(ValueError, match="must not be inside"):
        from radgpt.config import load_config
        from radgpt.evaluation.review import run_export

        paths = {"paths.drafts": str(drafts), "paths.table": str(data), "eval.baselines": []}
        run_export(
            load_config(overrides=paths), out=tmp_path / "p3", key=tmp_path / "p3" / "k.json"
        )


def test_import_unblinds_summarizes_and_kappa(packet, tmp_path):
    out, key_path, key = packet
    a = fill(out / "packet.csv", tmp_path / "a.csv", "dr_a", lambda i, j: (i + j) % 5 + 1)
    b = fill(out / "packet.csv", tmp_path / "b.csv", "dr_b", lambda i, j: (i + j) % 5 + 1)
    c = fill(out / "packet.csv", tmp_path / "c.csv", "", lambda i, j: 5 - (i + j) % 5)
    assert main(["review", "import", "--key", str(key_path), str(a), str(b), str(c),
                 "--out", str(tmp_path / "res")]) == 0  # fmt: skip
    s = json.loads((tmp_path / "res" / "review.json").read_text())
    assert s["raters"] == ["c", "dr_a", "dr_b"]  # a blank rater takes the file name
    k = s["kappa"]["coherence"]["pairs"]
    assert k["dr_a vs dr_b"]["kappa"] == pytest.approx(1.0)  # identical ratings
    # reversed ratings: strongly negative, equal to the textbook formula
    items_n = len(pd.read_csv(out / "packet.csv"))
    x = [(i + 1) % 5 + 1 for i in range(items_n)]
    assert k["c vs dr_a"]["kappa"] == pytest.approx(qwk([6 - v for v in x], x))
    assert k["c vs dr_a"]["kappa"] < -0.9
    # means per system equal the hand-computed means of the unblinded scores
    items = pd.read_csv(out / "packet.csv")
    sys_of = [key["items"][i]["system"] for i in items["item_id"]]
    want = [(i + 1) % 5 + 1 for i in range(len(items))]  # coherence is metric j=1, rater dr_a
    for name in ("reference", "draft", "nn"):
        vals = [w for w, sy in zip(want, sys_of, strict=True) if sy == name]
        rev = [6 - w for w in vals]
        assert s["systems"][name]["coherence"]["mean"] == pytest.approx(
            (2 * sum(vals) + sum(rev)) / (3 * len(vals)))  # fmt: skip
        assert s["systems"][name]["coherence"]["n"] == 12
    assert (tmp_path / "res" / "review.png").read_bytes()[:4] == b"\x89PNG"
    assert "Clinical Utility" in (tmp_path / "res" / "review.md").read_text()


def test_import_rejects_bad_files(packet, tmp_path):
    out, key_path, key = packet
    bad = fill(out / "packet.csv", tmp_path / "bad.csv", "x", lambda i, j: 7 if i == 0 else 3)
    with pytest.raises(ValueError, match="1-5"):
        read_ratings([bad])
    ok = read_ratings([fill(out / "packet.csv", tmp_path / "ok.csv", "x", lambda i, j: "")])
    assert ok[METRICS].isna().all().all()  # blanks are allowed (not rated)
    other = dict(key, packet_id="rv-other")
    with pytest.raises(ValueError, match="key is for rv-other"):
        unblind(ok, other)
    with pytest.raises(ValueError, match="twice"):
        read_ratings([tmp_path / "ok.csv", tmp_path / "ok.csv"])
    with pytest.raises(ValueError, match="not a ratings file"):
        read_ratings([out / "packet.html"])
    assert summarize(unblind(ok, key))["kappa"]["relevance"]["mean"] is None
    assert (
        main(["review", "import", "--key", str(key_path), str(bad), "--out", str(tmp_path / "r")])
        == 2
    )


# ---- the HTML packet in a real browser -------------------------------------------------------


class CDP:
    """Minimal Chrome DevTools Protocol client over the browser websocket (flat sessions)."""

    def __init__(self, url):
        import websocket

        self.ws = websocket.create_connection(url, timeout=20, suppress_origin=True)
        self.n = 0

    def send(self, method, session=None, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:  # skip events until our answer
            r = json.loads(self.ws.recv())
            if r.get("id") == self.n:
                if "error" in r:
                    raise RuntimeError(f"{method}: {r['error']}")
                return r["result"]

    def eval(self, session, js):
        r = self.send("Runtime.evaluate", session, expression=js, returnByValue=True)
        return r["result"].get("value")


@pytest.fixture
def browser(tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)"
        )
    pytest.importorskip("websocket", reason="websocket-client is not installed")
    prof = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={prof}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = prof / "DevToolsActivePort"
        for _ in range(300):
            if port_file.is_file() and len(port_file.read_text().split()) >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("chromium did not open its DevTools port within 30 s")
        port, path = port_file.read_text().split()[:2]
        cdp = CDP(f"ws://127.0.0.1:{port}{path}")
        yield cdp
        cdp.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def rate_in_browser(cdp, html, downloads, rater, score_js):
    """Open the packet, tick one radio per item x metric, type a comment, press Save."""
    downloads.mkdir(exist_ok=True)
    cdp.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    target = cdp.send("Target.createTarget", url=html.as_uri())["targetId"]
    sid = cdp.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    n = 0
    for _ in range(100):  # the page renders its items from the inline JSON once loaded
        n = cdp.eval(sid, "document.querySelectorAll('.item').length")
        if n:
            break
        time.sleep(0.1)
    filled = cdp.eval(sid, f"""(() => {{
        const score = {score_js};
        document.getElementById('rater').value = {json.dumps(rater)};
        let k = 0;
        document.querySelectorAll('.item').forEach((d, i) => {{
            P.metrics.forEach((m, j) => {{
                const r = d.querySelector('input[value="' + score(i, j) + '"][name$=":' + m + '"]');
                r.click(); k++;
            }});
            const c = d.querySelector('textarea'); c.value = 'note ' + i; c.dispatchEvent(new Event('input'));
        }});
        document.getElementById('save').click();
        return k;
    }})()""")  # fmt: skip
    for _ in range(100):
        done = [p for p in downloads.glob("ratings-*.csv")]
        if done and not list(downloads.glob("*.crdownload")):
            break
        time.sleep(0.1)
    status = cdp.eval(sid, "document.getElementById('status').textContent")
    cdp.send("Target.closeTarget", targetId=target)
    return n, filled, status, done


def test_html_packet_in_headless_chromium(packet, browser, tmp_path):
    out, key_path, key = packet
    html = out / "packet.html"
    assert "http://" not in html.read_text() and "https://" not in html.read_text()  # offline
    n, filled, status, got = rate_in_browser(
        browser, html, tmp_path / "dl-a", "Dr A", "(i, j) => (i + j) % 5 + 1"
    )
    assert n == 12 and filled == 60, status
    assert status.startswith("saved ratings-"), status
    assert len(got) == 1 and got[0].name == f"ratings-{key['packet_id']}-Dr_A.csv"
    _, _, _, got_b = rate_in_browser(
        browser, html, tmp_path / "dl-b", "Dr B", "(i, j) => Math.min(5, (i + j) % 5 + 2)"
    )
    rows = list(csv.DictReader(open(got[0])))
    assert len(rows) == 12 and rows[0]["rater"] == "Dr A" and rows[3]["comment"] == "note 3"
    page_order = [r["item_id"] for r in rows]
    assert rows[0][METRICS[0]] == "1" and rows[1][METRICS[2]] == "4"
    s = run_import(key_path, [got[0], got_b[0]], tmp_path / "res")
    assert s["raters"] == ["Dr A", "Dr B"] and s["items_rated"] == 24
    k = s["kappa"]["understandability"]["pairs"]["Dr A vs Dr B"]
    assert k["items"] == 12 and 0 < k["kappa"] < 1  # close but not identical raters
    # unblinded means match the scores typed into the page
    sys_of = [key["items"][i]["system"] for i in page_order]
    for name in ("reference", "draft", "nn"):
        vals = [(i % 5) + 1 for i, sy in enumerate(sys_of) if sy == name]
        vals += [min(5, (i % 5) + 2) for i, sy in enumerate(sys_of) if sy == name]
        assert s["systems"][name]["understandability"]["mean"] == pytest.approx(
            sum(vals) / len(vals)
        )
    assert os.path.getsize(tmp_path / "res" / "review.png") > 0


def test_flagged_items_first_with_the_finding_highlighted(tmp_path):
    out, key, ids = export(tmp_path, "-k", "6")
    items = list(csv.DictReader(open(out / "packet.csv")))
    flagged = [bool(it["flags"]) for it in items]
    assert any(flagged) and flagged == sorted(flagged, reverse=True)  # flagged first
    # the draft that reads normal for a pneumothorax: flagged, the pneumothorax named and marked
    pneumo = next(it for it in items if key["items"][it["item_id"]] == {
        "report_id": ids[2], "system": "draft"})  # fmt: skip
    assert pneumo["flags"] == "omits_finding"
    assert pneumo["check"] == "Pneumothorax: the Findings state it, the Impression does not"
    blob = (out / "packet.html").read_text()
    data_js = json.loads(blob.split('id="packet">')[1].split("</script>")[0])
    it = next(x for x in data_js["items"] if x["item_id"] == pneumo["item_id"])
    ((a, b),) = it["marks"]["findings"]
    assert it["findings"][a:b].lower() == "pneumothorax" and it["marks"]["impression"] == []
    # the same check for every system's text: the reference of that report is not flagged
    ref = next(it for it in items if key["items"][it["item_id"]] == {
        "report_id": ids[2], "system": "reference"})  # fmt: skip
    assert ref["flags"] == ""
