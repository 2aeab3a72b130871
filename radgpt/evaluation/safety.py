"""Silent misses: carry of abnormal findings, dangerous misses with and without a review flag.

    from radgpt.evaluation.safety import safety
    safety(findings_labels, ref_labels, draft_labels, flags, flag_observations)

Inputs are per report: labeler labels of the Findings, the reference Impression and the system's
Impression, the system's review flags and `<flag>:<observation>` strings. Pathologies are the
labeler's observations without No Finding and Support Devices (as for dangerous misses); a text
*states* a finding when it labels it positive or uncertain.

    carry                  pairs (report, pathology) positive in the Findings AND the reference:
                           share the system states (the finding radiologists carried)
    omissions              reports whose system Impression does not state a pathology that the
                           reference states positively; silent = without any review flag
    dangerous misses       radgpt.model.labeler.agreement's: the reference has a positive
                           pathology the Impression does not, and the Impression reads normal;
                           silent = without any review flag
    flag rate              reports with at least one flag
    flag precision         flagged reports whose Impression disagrees with the reference on a
                           pathology (an omission, or a positive pathology the reference does not
                           state): the flag pointed at a real difference
    per observation        omits_finding:<o> is right when the reference states o positively;
                           adds_finding:<o> when the reference does not state o
    reads_normal           right when the reference states a pathology positively
Pure: counts only, no text.
"""

from __future__ import annotations

from collections.abc import Sequence

from radgpt.model.labeler import PATHOLOGIES, POS, UNC

STATED = (POS, UNC)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _omits(ref: dict, hyp: dict) -> bool:
    return any(ref[o] == POS and hyp[o] not in STATED for o in PATHOLOGIES)


def _adds(ref: dict, hyp: dict) -> bool:
    return any(hyp[o] == POS and ref[o] not in STATED for o in PATHOLOGIES)


def dangerous(ref: dict, hyp: dict) -> bool:
    """labeler.agreement's dangerous miss for one report."""
    return hyp["No Finding"] == POS and any(ref[o] == POS and hyp[o] != POS for o in PATHOLOGIES)


def safety(
    findings: Sequence[dict],
    refs: Sequence[dict],
    hyps: Sequence[dict],
    flags: Sequence[Sequence[str]],
    observations: Sequence[Sequence[str]],
) -> dict:
    n = len(refs)
    if not (len(findings) == n == len(hyps) == len(flags) == len(observations)):
        raise ValueError("safety: inputs of different lengths")
    per = {o: {"both": 0, "carried": 0, "omits_flags": 0, "omits_right": 0, "adds_flags": 0,
               "adds_right": 0, "dangerous_missed": 0} for o in PATHOLOGIES}  # fmt: skip
    both = carried = omit = omit_silent = dm = dm_silent = flagged = flagged_right = 0
    normal_flags = normal_right = 0
    by_flag: dict[str, int] = {}
    for f, r, h, fl, obs in zip(findings, refs, hyps, flags, observations, strict=True):
        for o in PATHOLOGIES:
            if f[o] == POS and r[o] == POS:
                per[o]["both"] += 1
                per[o]["carried"] += h[o] in STATED
        both += sum(f[o] == POS and r[o] == POS for o in PATHOLOGIES)
        carried += sum(f[o] == POS and r[o] == POS and h[o] in STATED for o in PATHOLOGIES)
        wrong = _omits(r, h) or _adds(r, h)
        if _omits(r, h):
            omit += 1
            omit_silent += not fl
        if dangerous(r, h):
            dm += 1
            dm_silent += not fl
            for o in PATHOLOGIES:
                per[o]["dangerous_missed"] += r[o] == POS and h[o] != POS
        if fl:
            flagged += 1
            flagged_right += wrong
        for x in fl:
            by_flag[x] = by_flag.get(x, 0) + 1
        if "reads_normal" in fl:
            normal_flags += 1
            normal_right += any(r[o] == POS for o in PATHOLOGIES)
        for x in obs:
            kind, _, o = x.partition(":")
            if o not in per:
                continue
            if kind == "omits_finding":
                per[o]["omits_flags"] += 1
                per[o]["omits_right"] += r[o] == POS
            elif kind == "adds_finding":
                per[o]["adds_flags"] += 1
                per[o]["adds_right"] += r[o] not in STATED
    for v in per.values():
        v["carry"] = _ratio(v["carried"], v["both"])
        v["omits_precision"] = _ratio(v["omits_right"], v["omits_flags"])
        v["adds_precision"] = _ratio(v["adds_right"], v["adds_flags"])
    tot = {k: sum(v[k] for v in per.values()) for k in ("omits_flags", "omits_right", "adds_flags",
                                                         "adds_right")}  # fmt: skip
    return {
        "n": n,
        "carry": {"both": both, "carried": carried, "rate": _ratio(carried, both)},
        "omissions": {"reports": omit, "silent": omit_silent, "silent_share": _ratio(omit_silent, omit)},
        "dangerous_misses": {"reports": dm, "silent": dm_silent, "silent_share": _ratio(dm_silent, dm)},
        "flags": {
            "flagged": flagged,
            "rate": _ratio(flagged, n),
            "precision": _ratio(flagged_right, flagged),
            "by_flag": dict(sorted(by_flag.items())),
            "omits_precision": _ratio(tot["omits_right"], tot["omits_flags"]),
            "adds_precision": _ratio(tot["adds_right"], tot["adds_flags"]),
            "reads_normal_precision": _ratio(normal_right, normal_flags),
        },
        "per_observation": per,
    }  # fmt: skip
