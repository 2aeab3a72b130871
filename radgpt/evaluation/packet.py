"""The review packet as one offline HTML page: inline JSON items, CSS and JS, no network.

    from radgpt.evaluation.packet import packet_html
    Path("packet.html").write_text(packet_html(items, "rv-1234abcd"))

A radiologist scores 1-5 per rubric metric plus free text; "Save" downloads
ratings-<packet>-<rater>.csv (work in progress stays in the browser's localStorage). Flagged items
(radgpt.evaluation.review.build_packet puts them first) show what to check, the finding's words
marked in the Findings and the Impression.
"""

from __future__ import annotations

import json

from radgpt.evaluation.review import METRICS, RATING_COLS, TITLES

_CSS = """body{font-family:sans-serif;max-width:900px;margin:1em auto;color:#222}
.item{border:1px solid #bbb;border-radius:6px;padding:.6em 1em;margin:1em 0}
.text{white-space:pre-wrap;background:#f6f6f6;padding:.4em;border-radius:4px}
.m{display:flex;gap:.8em;align-items:center;margin:.2em 0}.m span{width:11em}
textarea{width:100%;height:3em}.done{border-color:#3a3}#bar{position:sticky;top:0;
background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}
.flagged{border-color:#c60;border-width:2px}.check{background:#fff3e0;color:#8a3b00;padding:.3em .5em;
border-radius:4px;margin:.3em 0}mark{background:#ffd54f}"""

_JS = """const P = JSON.parse(document.getElementById('packet').textContent);
const STORE = 'radgpt-review-' + P.packet_id;
const $ = (t, txt) => { const e = document.createElement(t); if (txt) e.textContent = txt; return e; };
function marked(text, spans) {  // text nodes + <mark> for the flagged observations' mentions
  const e = $('div'); e.className = 'text'; let at = 0;
  (spans || []).forEach(([a, b]) => { if (a < at) return;
    e.append(document.createTextNode(text.slice(at, a)), $('mark', text.slice(a, b))); at = b; });
  e.append(document.createTextNode(text.slice(at))); return e;
}
function render() {
  const root = document.getElementById('items');
  P.items.forEach((it) => {
    const d = $('div'); d.className = 'item' + (it.flags ? ' flagged' : ''); d.id = it.item_id;
    d.append($('h3', it.item_id));
    if (it.flags) d.append($('div', 'Check (' + it.flags + ')' + (it.check ? ': ' + it.check : '')));
    if (it.flags) d.lastChild.className = 'check';
    d.append($('b', 'Findings'), marked(it.findings, it.marks.findings), $('b', 'Impression'));
    d.append(marked(it.impression, it.marks.impression));
    P.metrics.forEach((m, j) => {
      const row = $('div'); row.className = 'm'; row.append($('span', P.titles[j]));
      for (let v = 1; v <= 5; v++) {
        const l = $('label'); const r = $('input'); r.type = 'radio';
        r.name = it.item_id + ':' + m; r.value = v; r.onchange = keep; l.append(r, ' ' + v); row.append(l);
      }
      d.append(row);
    });
    const c = $('textarea'); c.name = it.item_id + ':comment'; c.placeholder = 'comment (optional)';
    c.oninput = keep; d.append(c); root.append(d);
  });
}
function collect() {
  const rater = document.getElementById('rater').value.trim();
  return P.items.map((it) => {
    const row = {packet_id: P.packet_id, item_id: it.item_id, rater: rater};
    P.metrics.forEach((m) => {
      const r = document.querySelector('input[name="' + it.item_id + ':' + m + '"]:checked');
      row[m] = r ? r.value : '';
    });
    row.comment = document.querySelector('textarea[name="' + it.item_id + ':comment"]').value;
    return row;
  });
}
function keep() {
  const rows = collect();
  localStorage.setItem(STORE, JSON.stringify({rater: document.getElementById('rater').value, rows: rows}));
  let n = 0;
  rows.forEach((r) => { const ok = P.metrics.every((m) => r[m] !== '');
    document.getElementById(r.item_id).classList.toggle('done', ok); n += ok; });
  document.getElementById('status').textContent = n + ' / ' + rows.length + ' items fully scored';
}
function restore() {
  const s = JSON.parse(localStorage.getItem(STORE) || 'null'); if (!s) return;
  document.getElementById('rater').value = s.rater || '';
  s.rows.forEach((r) => {
    P.metrics.forEach((m) => { if (r[m] === '') return;
      const e = document.querySelector('input[name="' + r.item_id + ':' + m + '"][value="' + r[m] + '"]');
      if (e) e.checked = true; });
    const c = document.querySelector('textarea[name="' + r.item_id + ':comment"]'); if (c) c.value = r.comment;
  });
}
const q = (v) => '"' + String(v).replace(/"/g, '""') + '"';
function save() {
  const rater = document.getElementById('rater').value.trim();
  if (!rater) { document.getElementById('status').textContent = 'enter your name first'; return; }
  const cols = P.columns; const rows = collect();
  const text = [cols.join(',')].concat(rows.map((r) => cols.map((c) => q(r[c])).join(','))).join('\\r\\n');
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text + '\\r\\n'], {type: 'text/csv'}));
  a.download = 'ratings-' + P.packet_id + '-' + rater.replace(/[^A-Za-z0-9_-]/g, '_') + '.csv';
  document.body.append(a); a.click(); a.remove();
  document.getElementById('status').textContent = 'saved ' + a.download;
}
render(); restore(); keep();
document.getElementById('rater').oninput = keep;
document.getElementById('save').onclick = save;"""


def packet_html(items: list[dict], packet_id: str) -> str:
    """One self-contained page: the items as inline JSON, inline CSS and JS, no network."""
    data = {"packet_id": packet_id, "metrics": METRICS, "titles": TITLES, "columns": RATING_COLS,
            "items": [{k: it.get(k, d) for k, d in (("item_id", ""), ("findings", ""),
                       ("impression", ""), ("flags", ""), ("check", ""), ("marks", {}))}
                      for it in items]}  # fmt: skip
    blob = json.dumps(data).replace("<", "\\u003c")  # no "</script>" can end the block early
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>RadGPT review packet {packet_id}</title>
<style>{_CSS}</style></head><body>
<h1>Impression review packet <code>{packet_id}</code></h1>
<p>For each item, read the Findings and the candidate Impression, then score 1 (poor) to 5
(excellent): <b>Understandability</b>, <b>Coherence</b>, <b>Relevance</b>, <b>Conciseness</b>,
<b>Clinical Utility</b>. Items whose Impression a consistency check flags come first (orange, the
finding highlighted); otherwise the order is random and who wrote each Impression is hidden. Your work is
kept in this browser; press <b>Save</b> to download your ratings file and send it back.</p>
<div id="bar"><label>Your name <input id="rater" autocomplete="off"></label>
<button id="save">Save ratings (CSV)</button> <span id="status"></span></div>
<div id="items"></div>
<script type="application/json" id="packet">{blob}</script>
<script>{_JS}</script>
</body></html>
"""
