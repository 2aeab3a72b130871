"""The review flags' carry threshold, swept on a split's drafts: flag rate against silent misses.

    from radgpt.evaluation.tune import sweep, choose
    rows = sweep(carry_view, find_labels, ref_labels, draft_labels, text_flags, carry, (0.3, 0.4))
    best = choose(rows, max_flag_rate=0.25)    # a row, or None when no threshold fits

`omits_finding` checks the Findings observations whose carry rate (radgpt.model.carry) is at least
`draft.carry_threshold`: lower = more observations checked, more flags, fewer silent misses. A
draft's other flags (the text guards) do not depend on the threshold; its consistency flags are
recomputed here from the labels exactly as drafting computes them (radgpt.draft.flags.consistency),
so one drafting run of a split prices every threshold. Tune on the validate split (`radgpt
evaluate --split validate`), report on test. Pure: labels and counts in, counts out.
"""

from __future__ import annotations

from collections.abc import Sequence

from radgpt.draft.flags import CONSISTENCY, consistency
from radgpt.evaluation.safety import safety
from radgpt.model.carry import CarryRates

GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def sweep(
    carry_view: Sequence[dict],
    findings: Sequence[dict],
    refs: Sequence[dict],
    hyps: Sequence[dict],
    text_flags: Sequence[Sequence[str]],
    carry: CarryRates,
    thresholds: Sequence[float] = GRID,
) -> list[dict]:
    """One row per threshold: flag rate, silent dangerous misses and omissions, flag precision.

    carry_view: the Findings' labels as drafting's flags read them (carry.findings_labels);
    findings: their labeler labels (safety's carry); text_flags: each draft's stored flags, whose
    consistency flags are replaced by the threshold's.
    An empty draft gets no consistency flags (as in drafting: it is flagged `empty`)."""
    rows = []
    for t in thresholds:
        usual = carry.usual(t)
        flags, obs = [], []
        for c, h, fl in zip(carry_view, hyps, text_flags, strict=True):
            o = consistency(c, h, usual) if "empty" not in fl else []
            kinds = {x.split(":", 1)[0] for x in o}
            flags.append(
                [x for x in fl if x not in CONSISTENCY] + [k for k in CONSISTENCY if k in kinds]
            )
            obs.append(o)
        s = safety(findings, refs, hyps, flags, obs)
        rows.append({
            "threshold": t,
            "usual": sorted(usual),
            "flag_rate": s["flags"]["rate"],
            "flagged": s["flags"]["flagged"],
            "flag_precision": s["flags"]["precision"],
            "dangerous_misses": s["dangerous_misses"]["reports"],
            "silent_dangerous": s["dangerous_misses"]["silent"],
            "silent_dangerous_share": s["dangerous_misses"]["silent_share"],
            "omissions": s["omissions"]["reports"],
            "silent_omissions": s["omissions"]["silent"],
            "silent_omission_share": s["omissions"]["silent_share"],
        })  # fmt: skip
    return rows


def choose(rows: Sequence[dict], max_flag_rate: float) -> dict | None:
    """The row with the fewest silent dangerous misses, then fewest silent omissions, among those
    whose flag rate is at most max_flag_rate; ties go to the higher threshold (fewer checks)."""
    ok = [r for r in rows if (r["flag_rate"] or 0) <= max_flag_rate]
    if not ok:
        return None
    return min(ok, key=lambda r: (r["silent_dangerous"], r["silent_omissions"], -r["threshold"]))
