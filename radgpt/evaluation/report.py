"""Evaluation report files: metrics.json, per_report.csv, summary.md, report.html + PNG plots.

    from radgpt.evaluation.report import write
    write("var/eval/latest", metrics)      # metrics = radgpt.evaluation.run.run_evaluate(...)

report.html links the PNGs next to it (rouge.png, findings_f1.png, lengths.png, safety.png): copy
the whole directory. Published anchors are shown beside our numbers, labelled as different test sets.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from radgpt.evaluation.rouge import METRICS
from radgpt.model.labeler import OBSERVATIONS
from radgpt.runtime import write_json_atomic

# Radiology-Llama2 (Liu et al., 2023), ROUGE-1 on their own test sets: context, not a paired test
ANCHORS = [
    {"system": "Radiology-Llama2 (published)", "test_set": "MIMIC-CXR test", "rouge1": 0.4834},
    {"system": "Radiology-Llama2 (published)", "test_set": "OpenI test", "rouge1": 0.4185},
]
PLOTS = ("rouge.png", "findings_f1.png", "lengths.png", "safety.png")


def _f(x, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _ci(s: dict) -> str:
    return f"{_f(s['mean'])} [{_f(s['lo'])}, {_f(s['hi'])}]"


def plots(out: Path, m: dict) -> list[str]:
    """Draw the three PNGs; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = list(m["systems"])
    # 1. ROUGE by system, 95% bootstrap CI as error bars
    fig, ax = plt.subplots(figsize=(7, 3.5))
    w = 0.8 / len(METRICS)
    for k, met in enumerate(METRICS):
        s = [m["systems"][x]["rouge"][met] for x in systems]
        mean = np.array([v["mean"] for v in s])
        err = np.array([[v["mean"] - v["lo"] for v in s], [v["hi"] - v["mean"] for v in s]])
        ax.bar(np.arange(len(systems)) + k * w, mean, w, yerr=err, capsize=3, label=met)
    ax.set_xticks(np.arange(len(systems)) + w, systems)
    ax.set_ylabel("F1 (mean over reports)")
    ax.set_title(f"ROUGE by system, 95% bootstrap CI (n={m['n']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=110)
    plt.close(fig)
    # 2. finding F1 by observation (observations with any positive; missing = undefined)
    fig, ax = plt.subplots(figsize=(8, 4))
    obs = [o for o in OBSERVATIONS if any(
        m["systems"][s]["findings"]["per_observation"][o]["f1"] is not None for s in systems)]  # fmt: skip
    w = 0.8 / max(len(systems), 1)
    for k, s in enumerate(systems):
        f1 = [m["systems"][s]["findings"]["per_observation"][o]["f1"] or 0.0 for o in obs]
        ax.barh(np.arange(len(obs)) + k * w, f1, w, label=s)
    ax.set_yticks(np.arange(len(obs)) + w * (len(systems) - 1) / 2, obs, fontsize=8)
    ax.set_xlabel("F1 of positive findings vs reference")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=110)
    plt.close(fig)
    # 3. length histograms (words) of each system against the reference
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ref = m["_reference_words"]
    series = {"reference": ref} | {
        s: [r["words"] for r in m["_per_report"] if r["system"] == s] for s in systems
    }
    hi = max(max(v) if v else 0 for v in series.values()) + 1
    bins = np.linspace(0, hi, min(30, hi) + 1)
    for name, v in series.items():
        ax.hist(v, bins=bins, histtype="step", linewidth=1.5, label=name)
    ax.set_xlabel("words per Impression")
    ax.set_ylabel("reports")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=110)
    plt.close(fig)
    safety_plot(out / PLOTS[3], m)
    return list(PLOTS)


SAFETY_BARS = (("carry", "carry"), ("flag rate", "flag_rate"), ("flag precision", "flag_precision"),
               ("silent share of dangerous misses", "silent_share"))  # fmt: skip


def _safety_values(v: dict) -> dict:
    s = v["safety"]
    return {"carry": s["carry"]["rate"], "flag_rate": s["flags"]["rate"],
            "flag_precision": s["flags"]["precision"],
            "silent_share": s["dangerous_misses"]["silent_share"]}  # fmt: skip


def safety_plot(path: Path, m: dict) -> None:
    """Left: carry, flag rate/precision, silent share of dangerous misses per system; right: carry
    per observation (pairs stated by Findings and reference)."""
    import matplotlib.pyplot as plt
    import numpy as np

    sy = {s: v for s, v in m["systems"].items() if "safety" in v}
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    w = 0.8 / max(len(sy), 1)
    for k, (s, v) in enumerate(sy.items()):
        vals = _safety_values(v)
        a.bar(
            np.arange(len(SAFETY_BARS)) + k * w, [vals[x] or 0 for _, x in SAFETY_BARS], w, label=s
        )
    a.set_xticks(np.arange(len(SAFETY_BARS)) + w * (len(sy) - 1) / 2,
                 [t for t, _ in SAFETY_BARS], fontsize=8, rotation=15)  # fmt: skip
    a.set_ylim(0, 1)
    a.set_title("Silent misses and review flags")
    obs = sorted({o for v in sy.values() for o, x in v["safety"]["per_observation"].items()
                  if x["both"]})  # fmt: skip
    for k, (s, v) in enumerate(sy.items()):
        per = v["safety"]["per_observation"]
        b.barh(np.arange(len(obs)) + k * w, [per[o]["carry"] or 0 for o in obs], w, label=s)
    b.set_yticks(np.arange(len(obs)) + w * (len(sy) - 1) / 2,
                 [f"{o} (n={next(iter(sy.values()))['safety']['per_observation'][o]['both']})"
                  for o in obs], fontsize=8)  # fmt: skip
    b.set_xlim(0, 1)
    b.set_xlabel("carry: share stated by the system")
    for ax in (a, b):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tables(m: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) tables shared by summary.md and report.html."""
    sy = m["systems"]
    out = [
        ("ROUGE F1, mean [95% CI]", ["system", *METRICS],
         [[s, *(_ci(v["rouge"][x]) for x in METRICS)] for s, v in sy.items()]),
        ("Clinical finding agreement (CheXpert-style rule labeler, positive findings)",
         ["system", "micro F1", "macro F1", "dangerous misses (reports)", "(findings)"],
         [[s, _f(v["findings"]["micro_f1"]), _f(v["findings"]["macro_f1"]),
           str(v["findings"]["dangerous_miss_reports"]), str(v["findings"]["dangerous_miss_findings"])]
          for s, v in sy.items()]),
        ("Silent misses and review flags (carry: pathologies stated by Findings and reference that "
         "the system states; silent = without any review flag; baselines: the flags drafting would "
         "give their text)",
         ["system", "ROUGE-1", "carry", "dangerous misses", "silent", "omissions", "silent",
          "flag rate", "flag precision", "omits_finding precision", "adds_finding precision",
          "reads_normal precision"],
         [[s, _f(v["rouge"]["rouge1"]["mean"]), _frac(x["carry"]["carried"], x["carry"]["both"]),
           str(x["dangerous_misses"]["reports"]), str(x["dangerous_misses"]["silent"]),
           str(x["omissions"]["reports"]), str(x["omissions"]["silent"]),
           _frac(x["flags"]["flagged"], x["n"]), _f(x["flags"]["precision"]),
           _f(x["flags"]["omits_precision"]), _f(x["flags"]["adds_precision"]),
           _f(x["flags"].get("reads_normal_precision"))]
          for s, v in sy.items() if (x := v.get("safety"))]),
        ("Per observation: carry, dangerous misses, consistency flags (right / raised)",
         ["observation", *(f"{s}: {k}" for s in sy if "safety" in sy[s]
                           for k in ("carry", "missed", "omits", "adds"))],
         [[o, *(c for s, v in sy.items() if "safety" in v
                for c in _obs_cells(v["safety"]["per_observation"][o]))]
          for o in _obs_rows(sy)]),
        ("Length (words)", ["system", "mean", "median", "p10", "p90", "mean / reference"],
         [["reference", *(_f(m["reference"]["length"][k], 1) for k in ("mean", "median", "p10", "p90")), "1.00"]]
         + [[s, *(_f(v["length"][k], 1) for k in ("mean", "median", "p10", "p90")),
             _f(v["length"]["ratio_to_reference"], 2)] for s, v in sy.items()]),
        ("Published anchors (DIFFERENT test sets: context only, not comparable)",
         ["system", "test set", "ROUGE-1"],
         [[a["system"], a["test_set"], _f(a["rouge1"], 4)] for a in ANCHORS]
         + [[s, f"this run: {m.get('split')} split, {m['n']} reports", _f(v["rouge"]["rouge1"]["mean"], 4)]
            for s, v in sy.items()]),
    ]  # fmt: skip
    for s, v in (m.get("carry_sweep") or {}).items():
        rec = (v.get("recommended") or {}).get("threshold")
        out.append((f"{s}: draft.carry_threshold sweep (recommended at flag rate <= "
                    f"{v['max_flag_rate']:g}: {rec if rec is not None else 'none fits'}; tune on "
                    "validate, report on test)",
                    ["threshold", "observations checked", "flag rate", "flag precision",
                     "dangerous misses", "silent", "omissions", "silent"],
                    [[f"{r['threshold']:g}", str(len(r["usual"])), _frac(r["flagged"], m["n"]),
                      _f(r["flag_precision"]), str(r["dangerous_misses"]), str(r["silent_dangerous"]),
                      str(r["omissions"]), str(r["silent_omissions"])] for r in v["rows"]]))  # fmt: skip
    for col in ("source", "split"):
        groups = m.get(f"by_{col}") or {}
        rows = [[g, str(v["n"]), s, _ci(v[s]["rouge"]["rouge1"]), _f(v[s]["micro_f1"])]
                for g, v in groups.items() for s in sy]  # fmt: skip
        if rows:
            out.append(
                (f"By {col}", [col, "n", "system", "ROUGE-1 [95% CI]", "finding micro F1"], rows)
            )
    if m.get("paired"):
        out.append(("Paired bootstrap (A - B over the same reports)",
                    ["A", "B", "metric", "diff [95% CI]", "p(A not better)"],
                    [[p["a"], p["b"], p["metric"], f"{_f(p['diff'])} [{_f(p['lo'])}, {_f(p['hi'])}]",
                      _f(p["p_a_not_better"])] for p in m["paired"]]))  # fmt: skip
    return out


def _frac(a: int, b: int) -> str:
    return f"{a / b:.3f} ({a}/{b})" if b else "n/a"


def _obs_rows(sy: dict) -> list[str]:
    keys = ("both", "dangerous_missed", "omits_flags", "adds_flags")
    per = [v["safety"]["per_observation"] for v in sy.values() if "safety" in v]
    return [o for o in (per[0] if per else {}) if any(p[o][k] for p in per for k in keys)]


def _obs_cells(x: dict) -> list[str]:
    return [_frac(x["carried"], x["both"]), str(x["dangerous_missed"]),
            f"{x['omits_right']}/{x['omits_flags']}", f"{x['adds_right']}/{x['adds_flags']}"]  # fmt: skip


def _provenance_lines(m: dict) -> list[str]:
    ev = m.get("evaluated", {})
    d, t = ev.get("drafts", {}), ev.get("data", {})
    return [
        f"evaluation run: {m.get('eval_run_id')} at {m.get('created_at')} ({m.get('code_version')})",
        f"drafts: {d.get('path')}; run_ids {d.get('run_ids')}; adapter_ids {d.get('adapter_ids')}",
        f"prompts {d.get('prompts')}; base models {d.get('base_models')}",
        f"data: {t.get('path')}; ingest runs {t.get('ingest_runs')}; snapshot {t.get('snapshot_sha256')}",
        f"coverage: {m.get('coverage')}",
        f"review flags: {m.get('review_flags')}",
    ]


def markdown(m: dict) -> str:
    lines = [f"# RadGPT evaluation: {m.get('split')} split, {m['n']} reports", ""]
    lines += [f"- {x}" for x in _provenance_lines(m)] + [""]
    for title, head, rows in tables(m):
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    lines += ["Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS), ""]
    return "\n".join(lines)


def html_report(m: dict) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>RadGPT evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:"
        "collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}"
        "th{background:#eee}img{max-width:100%}</style></head><body>",
        f"<h1>RadGPT evaluation: {e(str(m.get('split')))} split, {m['n']} reports</h1><ul>",
        *(f"<li>{e(x)}</li>" for x in _provenance_lines(m)),
        "</ul>",
    ]
    for title, head, rows in tables(m):
        parts.append(
            f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts += [f"<h2>{e(p)}</h2><img src='{e(p)}' alt='{e(p)}'>" for p in PLOTS]
    parts.append("</body></html>")
    return "\n".join(parts)


def write(out: str | Path, m: dict) -> Path:
    """Write metrics.json, per_report.csv, summary.md, report.html and the PNGs into out/."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots(out, m)
    with open(out / "per_report.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["report_id", "system", *METRICS, "words"])
        w.writeheader()
        w.writerows(m["_per_report"])
    (out / "summary.md").write_text(markdown(m))
    (out / "report.html").write_text(html_report(m))
    public = {k: v for k, v in m.items() if not k.startswith("_")}
    write_json_atomic(out / "metrics.json", {**public, "anchors": ANCHORS, "files": [*PLOTS,
                      "per_report.csv", "summary.md", "report.html"]})  # fmt: skip
    return out
