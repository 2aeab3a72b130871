"""Score systems against reference Impressions: ROUGE with CIs, finding agreement, lengths, and
(for systems with review flags) carry and silent misses (radgpt.evaluation.safety).

    from radgpt.evaluation.score import score
    m = score(frame, ["draft", "constant", "nn"], n_boot=1000, seed=7)

`frame` is a pandas DataFrame with one row per evaluated report: report_id, source, split,
reference (the reference Impression) and one column of predicted Impressions per system. Every
system is scored on the same rows, so the paired bootstrap compares like with like.
Pure: no I/O, no text in the result (ids, counts and numbers only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from radgpt.draft.flags import words
from radgpt.evaluation.rouge import METRICS, paired_bootstrap, rouge, summarize
from radgpt.evaluation.safety import safety
from radgpt.model import labeler


def lengths(texts: Sequence[str]) -> dict:
    """Word counts (radgpt.draft.flags.words: lower-case alphanumeric runs): mean/median/p10/p90."""
    n = np.array([len(words(t)) for t in texts], dtype=float)
    if len(n) == 0:
        return {"mean": None, "median": None, "p10": None, "p90": None, "n": 0}
    p10, med, p90 = np.quantile(n, [0.1, 0.5, 0.9])
    return {"mean": float(n.mean()), "median": float(med), "p10": float(p10), "p90": float(p90),
            "n": int(len(n))}  # fmt: skip


def _group_scores(
    frame: pd.DataFrame, col: str, systems: Sequence[str], per: dict, labels: dict, ref_labels: list,
    n_boot: int, seed: int,
) -> dict:  # fmt: skip
    """{group value: {system: {"rouge": summary, "micro_f1": f}}} for one grouping column."""
    out: dict = {}
    for g, idx in frame.groupby(col, sort=True).indices.items():
        out[str(g)] = {
            s: {
                "rouge": summarize({m: per[s][m][idx] for m in METRICS}, n_boot, seed),
                "micro_f1": labeler.agreement(
                    [ref_labels[i] for i in idx], [labels[s][i] for i in idx]
                )["micro_f1"],
            }
            for s in systems
        }
        out[str(g)]["n"] = int(len(idx))
    return out


def score(
    frame: pd.DataFrame,
    systems: Sequence[str],
    n_boot: int = 1000,
    seed: int = 7,
    compare: Sequence[str] | None = None,
    flags: dict[str, tuple[list, list]] | None = None,
) -> dict:
    """Metrics of each system; `compare` = systems tested (paired bootstrap) against all others.

    flags: {system: (review flags per report, flag observations per report)}: with a `findings`
    column, each such system also gets `safety` (radgpt.evaluation.safety: carry, silent misses,
    flag rate and precision).
    """
    missing = [c for c in ("report_id", "reference", *systems) if c not in frame.columns]
    if missing:
        raise ValueError(f"score: frame lacks columns {missing}")
    frame = frame.reset_index(drop=True)
    refs = frame["reference"].fillna("").tolist()
    ref_labels = labeler.label_many(refs)
    per = {s: rouge(refs, frame[s].fillna("").tolist()) for s in systems}  # {s: {m: [n]}}
    labels = {s: labeler.label_many(frame[s].fillna("").tolist()) for s in systems}
    out: dict = {
        "n": int(len(frame)),
        "reference": {
            "length": lengths(refs),
            "positives": {
                o: sum(r[o] == labeler.POS for r in ref_labels) for o in labeler.OBSERVATIONS
            },
        },
        "systems": {},
    }
    find_labels = None
    for s in systems:
        agree = labeler.agreement(ref_labels, labels[s])
        ln = lengths(frame[s].fillna("").tolist())
        ref_mean = out["reference"]["length"]["mean"]
        ln["ratio_to_reference"] = (
            ln["mean"] / ref_mean if ln["mean"] is not None and ref_mean else None
        )
        out["systems"][s] = {
            "rouge": summarize(per[s], n_boot, seed),
            "findings": agree,
            "length": ln,
        }
        if flags and s in flags and "findings" in frame.columns:
            if find_labels is None:
                find_labels = labeler.label_many(frame["findings"].fillna("").tolist())
            out["systems"][s]["safety"] = safety(find_labels, ref_labels, labels[s], *flags[s])
    for col in ("source", "split"):
        if col in frame.columns:
            out[f"by_{col}"] = _group_scores(
                frame, col, systems, per, labels, ref_labels, n_boot, seed
            )
    out["paired"] = [
        {"a": a, "b": b, "metric": m, **paired_bootstrap(per[a][m], per[b][m], n_boot, seed)}
        for a in (compare or [])
        for b in systems
        if b != a
        for m in METRICS
    ]
    # per-report numbers for plots and per_report.csv (ids and scores only, no text)
    rows = []
    for s in systems:
        for i, rid in enumerate(frame["report_id"]):
            rows.append({"report_id": rid, "system": s, **{m: float(per[s][m][i]) for m in METRICS},
                         "words": len(words(frame[s].iat[i] or ""))})  # fmt: skip
    out["_per_report"] = rows
    out["_reference_words"] = [len(words(t)) for t in refs]
    # labeler labels per report (the carry threshold sweep reuses them); findings: None unless
    # a system has flags
    out["_labels"] = {"findings": find_labels, "reference": ref_labels, "systems": labels}
    return out
