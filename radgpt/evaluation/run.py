"""`radgpt evaluate`: join drafts with reference Impressions, add baselines, score, write the report.

    radgpt evaluate --drafts var/drafts --data var/table --split test \
        --baselines constant,nn,zero-shot --out var/eval/latest

Reads committed rows only (radgpt.table.read_reports, radgpt.writeback.fhir.read_drafts). Drafts are
grouped into one system per adapter_id ("draft" when there is one; "draft:<adapter_id>" else; the
base model without adapter is "draft:base"); for each (adapter, report) the latest draft counts.
Every system is scored on the reports that all draft systems cover, so comparisons are paired.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from radgpt.model.ids import text_sha256
from radgpt.runtime import code_version, new_run_id, sha256_bytes, utcnow

log = logging.getLogger("radgpt.evaluate")
REF_COLS = ["report_id", "source", "split", "findings", "impression", "eligible", "pair_sha256",
            "version"]  # fmt: skip
DRAFT_COLS = ["report_id", "draft", "flags", "flag_observations", "adapter_id", "run_id",
              "base_model", "base_model_sha256", "prompt_name", "prompt_version", "generation",
              "code_version", "generated_at", "findings_sha256"]  # fmt: skip
FLAG_COLS = ("flags", "flag_observations")


def select_refs(t: pa.Table, splits: list[str] | None) -> pd.DataFrame:
    """Eligible reports of the given splits (None = all) with a reference Impression."""
    df = t.select(REF_COLS).to_pandas()
    df = df[df["eligible"] & df["impression"].notna() & df["findings"].notna()]
    if splits:
        df = df[df["split"].isin(splits)]
    return df.rename(columns={"impression": "reference"}).reset_index(drop=True)


def select_drafts(
    t: pa.Table, run_ids: list[str] | None = None, adapter_id: str | None = None
) -> pd.DataFrame:
    """Latest draft per (adapter, report) after the optional run/adapter filters; adds `system`."""
    df = t.select(DRAFT_COLS).to_pandas()
    if run_ids:
        df = df[df["run_id"].isin(run_ids)]
    if adapter_id:
        df = df[df["adapter_id"] == adapter_id]
    df = df.assign(adapter=df["adapter_id"].fillna("base"))
    df = df.sort_values("generated_at").drop_duplicates(["adapter", "report_id"], keep="last")
    adapters = sorted(df["adapter"].unique())
    name = {a: "draft" if len(adapters) == 1 else f"draft:{a}" for a in adapters}
    return df.assign(system=df["adapter"].map(name)).reset_index(drop=True)


def current_drafts(refs: pd.DataFrame, drafts: pd.DataFrame) -> pd.DataFrame:
    """Drafts less those of a corrected report (version > 1) drafted from Findings it no longer
    has (drafts.findings_sha256): a draft is scored only against the version it was made from."""
    if "version" not in refs or "findings_sha256" not in drafts:
        return drafts
    later = refs[refs["version"].fillna(1) > 1]
    if later.empty:
        return drafts
    now = dict(zip(later["report_id"], later["findings"].map(text_sha256), strict=True))
    want = drafts["report_id"].map(now)
    return drafts[want.isna() | (want == drafts["findings_sha256"])]


def join(refs: pd.DataFrame, drafts: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per report covered by every draft system; one column per draft system (and, when
    the drafts have them, `flags:<system>` / `flag_observations:<system>`); a corrected report's
    drafts count when made from its current Findings (current_drafts)."""
    drafts = current_drafts(refs, drafts)
    wide = drafts.pivot(index="report_id", columns="system", values="draft")
    systems = sorted(wide.columns)
    wide = wide.dropna()
    for col in FLAG_COLS:
        if col in drafts.columns:
            w = drafts.pivot(index="report_id", columns="system", values=col)
            wide = wide.join(w.rename(columns=lambda s, c=col: f"{c}:{s}"), how="left")
    frame = refs.merge(wide.reset_index(), on="report_id", how="inner").sort_values("report_id")
    return frame.reset_index(drop=True), systems


def carry_rates(cfg, data_root: Path):
    """The carry rates drafting used: the configured adapter's file, else data_root's train split."""
    from radgpt.model.carry import CarryRates

    adapter = cfg.model_path(cfg.model.adapter) if cfg.model.adapter else None
    return CarryRates.for_adapter(adapter, data_root)


def review_flags(cfg, frame: pd.DataFrame, draft_systems, baselines, carry) -> tuple:
    """({system: (flags, observations)}, settings): the drafts' stored flags; for baselines the
    flags drafting would have given their text (same radgpt.draft.flags.review, same carry rates
    and draft.carry_threshold; never truncated), so flag rate and silent misses compare."""
    from radgpt.draft.flags import review
    from radgpt.model.prompts import instruction

    out = {}
    for s in draft_systems:
        if f"flags:{s}" in frame.columns:
            out[s] = tuple([list(x) for x in frame[f"{c}:{s}"]] for c in FLAG_COLS)
    usual, inst = carry.usual(cfg.draft.carry_threshold), instruction(cfg.train.task)
    ab = (
        carry.reads_abnormal(list(frame["findings"]), cfg.draft.abnormal_threshold)
        if baselines
        else []
    )
    for b in baselines:
        got = [review(f, d, truncated=False, instruction=inst, usual=usual, abnormal=a)
               for f, d, a in zip(frame["findings"], frame[b].fillna(""), ab, strict=True)]  # fmt: skip
        out[b] = ([g.flags for g in got], [g.observations for g in got])
    settings = {"carry_rates_sha256": carry.digest, "carry_threshold": cfg.draft.carry_threshold,
                "abnormal_threshold": cfg.draft.abnormal_threshold,
                "usual": sorted(usual), "drafts": "stored flags",
                "baselines": "computed at evaluation (what drafting would flag)"}  # fmt: skip
    return out, settings


def carry_sweep(cfg, frame: pd.DataFrame, m: dict, draft_systems, flags: dict, carry) -> dict:
    """{system: {"rows": [...], "recommended": row | None}} (radgpt.evaluation.tune) for each
    draft system with stored flags, from the labels score() made (m["_labels"]), the Findings as
    drafting's flags read them (carry.findings_labels) and the carry rates evaluation uses
    (review_flags)."""
    from radgpt.evaluation.tune import choose, sweep
    from radgpt.model.carry import findings_labels

    systems = [s for s in draft_systems if s in flags]
    if not cfg.eval.carry_grid or not systems:
        return {}
    lab = m["_labels"]
    find = [findings_labels(f) for f in frame["findings"]]
    out = {}
    for s in systems:
        rows = sweep(find, lab["findings"], lab["reference"], lab["systems"][s], flags[s][0],
                     carry, cfg.eval.carry_grid)  # fmt: skip
        out[s] = {"carry_rates_sha256": carry.digest, "max_flag_rate": cfg.eval.max_flag_rate,
                  "rows": rows, "recommended": choose(rows, cfg.eval.max_flag_rate)}  # fmt: skip
    return out


def provenance(
    drafts: pd.DataFrame, frame: pd.DataFrame, data_root: Path, drafts_root: Path
) -> dict:
    """What was evaluated: drafts runs/adapters/prompts and a snapshot id of the references."""
    from radgpt.table import manifests

    used = drafts[drafts["report_id"].isin(frame["report_id"])]
    snap = "\n".join(
        f"{r}\t{p}" for r, p in sorted(zip(frame["report_id"], frame["pair_sha256"], strict=True))
    )
    return {
        "drafts": {
            "path": str(drafts_root),
            "run_ids": {k: int(v) for k, v in used["run_id"].value_counts().sort_index().items()},
            "adapter_ids": sorted(used["adapter"].unique().tolist()),
            "base_models": sorted(used["base_model"].unique().tolist()),
            "base_model_sha256": sorted(used["base_model_sha256"].unique().tolist()),
            "prompts": sorted(
                {
                    f"{a}@{b}"
                    for a, b in zip(used["prompt_name"], used["prompt_version"], strict=True)
                }
            ),
            "generation": sorted(used["generation"].unique().tolist()),
            "code_versions": sorted(used["code_version"].unique().tolist()),
        },
        "data": {
            "path": str(data_root),
            "ingest_runs": [m.get("run_id") for m in manifests(data_root)],
            "snapshot_sha256": sha256_bytes(snap.encode()),
            "reports": int(len(frame)),
        },
    }


def run_evaluate(
    cfg,
    split: str | None = "test",
    out: str | Path | None = None,
    run_ids: list[str] | None = None,
    adapter_id: str | None = None,
) -> dict:
    """Evaluate the committed drafts of paths.drafts (and the eval.baselines) on the references of
    paths.table; write the report to out (default <paths.runs>/<eval run id>)."""
    from radgpt.evaluation import report
    from radgpt.evaluation.baselines import run_baselines
    from radgpt.evaluation.score import score
    from radgpt.table import read_reports
    from radgpt.writeback.drafts import read_drafts

    t0 = time.time()
    data_root = cfg.path("table")
    drafts_root = cfg.path("drafts")
    eval_id = new_run_id("eval")
    out = Path(out) if out else cfg.path("runs") / eval_id
    splits = None if split in (None, "all") else [s.strip() for s in split.split(",")]
    baselines = list(cfg.eval.baselines)

    if not data_root.is_dir():
        raise FileNotFoundError(
            f"reports table {data_root} not found: run `radgpt ingest` or pass --data"
        )
    if not drafts_root.is_dir():
        raise FileNotFoundError(
            f"drafts table {drafts_root} not found: run `radgpt draft` or pass --drafts"
        )
    all_refs = read_reports(data_root, columns=REF_COLS)
    refs = select_refs(all_refs, splits)
    d = select_drafts(read_drafts(drafts_root, DRAFT_COLS), run_ids, adapter_id)
    if refs.empty:
        raise ValueError(f"no eligible reports with an Impression in {data_root} (split={split})")
    if d.empty:
        raise ValueError(
            f"no committed drafts in {drafts_root} (run_ids={run_ids}, adapter={adapter_id})"
        )
    frame, draft_systems = join(refs, d)
    if frame.empty:
        raise ValueError(
            f"none of the {len(d)} drafts match an eligible {split} report in {data_root}"
        )
    log.info("evaluating %d reports (%d references, %d drafts, systems %s)",
             len(frame), len(refs), len(d), draft_systems)  # fmt: skip

    if baselines:
        train = select_refs(all_refs, ["train"])
        preds = run_baselines(
            baselines, train["findings"].tolist(), train["reference"].tolist(),
            frame["findings"].tolist(), cfg,
        )  # fmt: skip
        for name, p in preds.items():
            frame[name] = p
    systems = draft_systems + baselines
    carry = carry_rates(cfg, data_root)
    flags, flag_settings = review_flags(cfg, frame, draft_systems, baselines, carry)
    m = score(frame, systems, cfg.eval.bootstrap, cfg.eval.seed, compare=draft_systems, flags=flags)
    m["carry_sweep"] = carry_sweep(cfg, frame, m, draft_systems, flags, carry)
    m.update(
        review_flags=flag_settings,
        eval_run_id=eval_id,
        created_at=utcnow().isoformat(),
        code_version=code_version(),
        config_hash=cfg.hash(),
        split=split,
        draft_systems=draft_systems,
        baselines=baselines,
        coverage={
            "references": int(len(refs)),
            "evaluated": int(len(frame)),
            "references_without_draft": int(len(refs) - len(frame)),
            "drafts_outside_references": int((~d["report_id"].isin(refs["report_id"])).sum()),
        },
        evaluated=provenance(d, frame, data_root, drafts_root),
        bootstrap={"resamples": cfg.eval.bootstrap, "seed": cfg.eval.seed, "ci": 0.95},
        seconds=round(time.time() - t0, 2),
    )
    report.write(out, m)
    log.info("evaluation %s: %d reports -> %s (%.1f s)", eval_id, len(frame), out, time.time() - t0)
    return m
