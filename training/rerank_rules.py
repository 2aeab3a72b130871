"""Re-price n-best pick rules offline: draft every branch of a split once, then score each rule.

    .venv/bin/python training/rerank_rules.py --config conf/local.yaml --set paths.root=var/iu \
        --split validate --candidates var/iu/rerank-validate.json

The first run drafts all `draft.n_best` first-token branches of every eligible report of the
split with the drafting stages themselves (Preprocess with 30 rerank neighbours, HFEngine, the
Postprocess cleaning) and saves them with the Findings, reference and neighbours' Impressions to
--candidates (patient text: keep it under var/); later runs only re-score. Each rule picks with
radgpt.draft.nbest.rerank as drafting does and is scored as `radgpt evaluate` scores: mean
ROUGE-1 (paired bootstrap against the first rule), carry and dangerous misses (labeler of
radgpt.evaluation.safety). Tune on validate; look at test once, with the rule fixed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

K_MAX = 30  # neighbours kept per report; rules use a prefix

# name -> (branch every report, Findings weight, neighbours k, neighbour weight)
RULES = {
    "shipped before (Findings term 1, branch on a usual finding)": (False, 1.0, 0, 0.0),
    "every report, Findings term 2": (True, 2.0, 0, 0.0),
    "usual-finding branching, + 10 neighbours x 1": (False, 2.0, 10, 1.0),
    "every report + 10 neighbours x 1, Findings 1": (True, 1.0, 10, 1.0),
    "every report + 10 neighbours x 1, Findings 2 (default)": (True, 2.0, 10, 1.0),
    "every report + 5 neighbours x 1, Findings 2": (True, 2.0, 5, 1.0),
    "every report + 20 neighbours x 1, Findings 2": (True, 2.0, 20, 1.0),
    "every report + 10 neighbours x 2, Findings 2": (True, 2.0, 10, 2.0),
}


def dump(cfg, split: str, out: Path) -> tuple[list[dict], set[str]]:
    from radgpt.draft.drafter import adapter_dir
    from radgpt.draft.stages import HFEngine, Postprocess, Preprocess
    from radgpt.model.spec import ModelSpec
    from radgpt.table import read_reports

    cfg.draft.rerank_neighbours = K_MAX
    spec = ModelSpec.resolve(cfg, adapter_dir(cfg))
    t = read_reports(cfg).to_pandas()
    t = t[t["eligible"] & t["impression"].notna() & t["findings"].notna() & (t["split"] == split)]
    eng, d = HFEngine(spec, cfg), cfg.draft
    pre = Preprocess(spec, eng.tokenizer, d.max_new_tokens, d)
    post = Postprocess(spec, eng.tokenizer, {}, d)
    findings, ids = t["findings"].tolist(), t["report_id"].tolist()
    prompts, nb = pre(findings, ids)
    gens = eng(prompts, [d.n_best] * len(prompts))
    carries = pre.carries(findings)  # would branch without the wording term
    rows = []
    for i, g in enumerate(gens):
        cs = g.candidates or ((g.tokens, 0.0, g.stopped),)
        rows.append({
            "report_id": ids[i], "findings": findings[i], "reference": t["impression"].iloc[i],
            "usual_finding": carries[i],
            "candidates": [[post.clean(post._text(tk)), lp, len(tk) + s, s] for tk, lp, s in cs],
            "neighbours": nb[i],
        })  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"usual": sorted(post.usual), "rows": rows}))
    return rows, set(post.usual)


def score(rows: list[dict], usual: set[str]) -> list[dict]:
    from radgpt.draft.nbest import rerank
    from radgpt.evaluation.rouge import paired_bootstrap, rouge
    from radgpt.evaluation.safety import safety
    from radgpt.model.carry import findings_labels
    from radgpt.model.labeler import label

    refs = [r["reference"] for r in rows]
    f_lab, r_lab = [label(r["findings"]) for r in rows], [label(x) for x in refs]
    carry_lab = [findings_labels(r["findings"]) for r in rows]
    out, first = [], None
    for name, (every, w, k, wn) in RULES.items():
        hyps = []
        for r, fl in zip(rows, carry_lab, strict=True):
            c = r["candidates"]
            if not (every or r["usual_finding"]):
                hyps.append(c[0][0])  # greedy: this report would not branch
                continue
            i = rerank([x[0] for x in c], [x[1] for x in c], [x[2] for x in c], fl, usual, w,
                       [x[3] for x in c], r["neighbours"][:k], wn)  # fmt: skip
            hyps.append(c[i][0])
        s = rouge(refs, hyps)["rouge1"]
        first = s if first is None else first
        sf = safety(f_lab, r_lab, [label(h) for h in hyps], [[]] * len(rows), [[]] * len(rows))
        out.append({"rule": name, "rouge1": float(s.mean()), "paired": paired_bootstrap(s, first),
                    "carry": sf["carry"], "dangerous_misses": sf["dangerous_misses"]["reports"]})  # fmt: skip
    return out


def main(argv=None) -> int:
    from radgpt.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="conf/local.yaml")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--split", default="validate")
    ap.add_argument("--candidates", required=True, help="JSON of drafted branches (made if absent)")
    a = ap.parse_args(argv)
    path = Path(a.candidates)
    if path.is_file():
        got = json.loads(path.read_text())
        rows, usual = got["rows"], set(got["usual"])
    else:
        rows, usual = dump(load_config(a.config, a.set), a.split, path)
    print(f"{a.split}: {len(rows)} reports, {sum(r['usual_finding'] for r in rows)} with a "
          "usually-carried finding")  # fmt: skip
    print(
        "| pick rule | ROUGE-1 | paired vs first | carry | dangerous misses |\n|---|---|---|---|---|"
    )
    for x in score(rows, usual):
        p, c = x["paired"], x["carry"]
        print(
            f"| {x['rule']} | {x['rouge1']:.3f} | {p['diff']:+.3f} [{p['lo']:+.3f}, "
            f"{p['hi']:+.3f}] | {c['carried']}/{c['both']} | {x['dangerous_misses']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
