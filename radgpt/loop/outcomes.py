"""Outcomes: a draft meets its report's final version -> accepted, edited or replaced.

    radgpt outcomes --config conf/local.yaml       # link what arrived; the nightly job does it too
    radgpt stats --outcomes                        # acceptance / edit rates per night, adapter, flag

    from radgpt.loop.outcomes import run_outcomes, link, edit_distance, rates
    run_outcomes(cfg)                               # commits new rows to paths.outcomes; a summary

A draft's final report is the first final version (`is_final`: FHIR status
final/amended/corrected/appended, HL7 OBR-25 F/C, or no status at all in an archive export:
MIMIC-CXR, OpenI, CSV) with an Impression that the ingest committed AFTER the draft was generated.
The candidates are every row of the reports table, earlier versions too
(radgpt.table.read_reports(cfg, all_versions=True): one row per report version, docs/ingest.md
"Report versions"), found by, in this order:
1. report_id: a later version of the drafted report itself (the preliminary report signed with an
   Impression comes back as version n+1 of the same report_id: ingest state `corrected`);
2. accession: another report with the same accession number (system|value);
3. study_id: another report of the same source with the same study id.
Within a link, the earliest ingested candidate wins (then the lower version, then report_id).
A candidate of another patient (both patient ids known and different) is never linked.

The draft against the final Impression: edit_distance = word-level Levenshtein (radgpt.draft.flags
words: lower-case alphanumeric runs) / the longer one's word count; accepted = 0, replaced >=
outcomes.replaced_at, edited in between; plus the labeler's finding-level difference (findings
added / removed by the radiologist, dangerous miss). One row per draft_id, committed atomically
(radgpt.table); a draft that has an outcome keeps it, so a re-run adds nothing. No text is stored
or logged: ids, numbers and observation names only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from radgpt import table
from radgpt.draft.flags import words
from radgpt.model import labeler
from radgpt.runtime import code_version, new_run_id, utcnow
from radgpt.schema import arrow_schema, check_arrow

if TYPE_CHECKING:
    from radgpt.config import Config, OutcomesCfg

log = logging.getLogger(__name__)
LINKS = ("report_id", "accession", "study_id")  # in order of preference
OUTCOMES = ("accepted", "edited", "replaced")
DRAFT_COLS = ["draft_id", "report_id", "source", "patient_id", "study_id", "accession", "draft",
              "flags", "adapter_id", "adapter_version", "generated_at", "run_date"]  # fmt: skip
VERSION_COLS = ["report_id", "source", "patient_id", "study_id", "accession", "status",
                "impression", "ingest_run_id", "ingested_at", "version"]  # fmt: skip


def is_final(status: str | None, cfg: OutcomesCfg) -> bool:
    """A signed report: its status is one of outcomes.final_statuses (FHIR final, amended,
    corrected, appended; HL7 OBR-25 F, C), or it has none and outcomes.no_status_is_final (the
    MIMIC-CXR, OpenI and CSV exports hold signed reports only)."""
    if status is None or (isinstance(status, float) and status != status) or not status.strip():
        return cfg.no_status_is_final
    return status.strip() in set(cfg.final_statuses)


def levenshtein(a: list[str], b: list[str]) -> int:
    """Edit distance between word lists (insert, delete, substitute: cost 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def edit_distance(draft: str | None, final: str | None) -> float:
    """Normalized word-level Levenshtein: 0 = the same words in order, 1 = nothing kept."""
    a, b = words(draft), words(final)
    n = max(len(a), len(b))
    return levenshtein(a, b) / n if n else 0.0


def classify(distance: float, cfg: OutcomesCfg) -> str:
    if distance == 0:
        return "accepted"
    return "replaced" if distance >= cfg.replaced_at else "edited"


def _positives(lab: dict[str, str]) -> set[str]:
    return {o for o, v in lab.items() if v == labeler.POS and o != "No Finding"}


def candidates(versions: pd.DataFrame, cfg: OutcomesCfg) -> pd.DataFrame:
    """Final report versions with an Impression (a null version, files written before report
    versions, is 1)."""
    v = versions[versions["impression"].fillna("").str.strip() != ""]
    v = v[v["status"].map(lambda s: is_final(s, cfg))]
    ver = v["version"] if "version" in v.columns else pd.Series(1, index=v.index)
    return v.assign(version=ver.fillna(1).astype("int64"))


def _matches(drafts: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """Every (draft, final version) pair that shares a link key, with the link's rank."""
    f = finals.rename(columns={c: f"f_{c}" for c in finals.columns})
    parts = []
    for rank, col in enumerate(LINKS):
        left = drafts[drafts[col].notna()]
        on = [col] if col != "study_id" else ["source", "study_id"]
        m = left.merge(f, left_on=on, right_on=[f"f_{c}" for c in on], how="inner")
        parts.append(m.assign(link=col, _rank=rank))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def link(drafts: pd.DataFrame, versions: pd.DataFrame, cfg: OutcomesCfg) -> pd.DataFrame:
    """Drafts (DRAFT_COLS) x report versions (VERSION_COLS: every version, all_versions=True) ->
    one row per draft that has a final version ingested after it: the linked version's ids, times
    and Impression (f_ columns)."""
    finals = candidates(versions, cfg)
    if drafts.empty or finals.empty:
        return pd.DataFrame()
    m = _matches(drafts, finals)
    if m.empty:
        return m
    later = m["f_ingested_at"] > m["generated_at"]
    pa_, pb = m["patient_id"], m["f_patient_id"]
    same_patient = pa_.isna() | pb.isna() | (pa_ == pb)
    m = m[later & same_patient]
    m = m.sort_values(["draft_id", "_rank", "f_ingested_at", "f_version", "f_report_id"])
    return m.drop_duplicates("draft_id", keep="first").reset_index(drop=True)


def score(linked: pd.DataFrame, cfg: OutcomesCfg, run_id: str, now) -> list[dict]:
    """Outcome rows (schemas/outcomes.json) of linked drafts."""
    rows = []
    for r in linked.itertuples(index=False):
        d = edit_distance(r.draft, r.f_impression)
        ld, lf = labeler.label(r.draft), labeler.label(r.f_impression)
        pd_, pf = _positives(ld), _positives(lf)
        miss = labeler.agreement([lf], [ld])["dangerous_miss_reports"] > 0
        rows.append(
            {
                "draft_id": r.draft_id,
                "report_id": r.report_id,
                "final_report_id": r.f_report_id,
                "link": r.link,
                "final_status": _none(r.f_status),
                "final_ingest_run_id": r.f_ingest_run_id,
                "final_ingested_at": r.f_ingested_at,
                "generated_at": r.generated_at,
                "adapter_id": _none(r.adapter_id),
                "adapter_version": _none(r.adapter_version),
                "flags": list(r.flags),
                "outcome": classify(d, cfg),
                "edit_distance": round(d, 6),
                "draft_words": len(words(r.draft)),
                "final_words": len(words(r.f_impression)),
                "findings_added": sorted(pf - pd_),
                "findings_removed": sorted(pd_ - pf),
                "dangerous_miss": bool(miss),
                "outcome_run_id": run_id,
                "linked_at": now,
                "code_version": code_version(),
                "run_date": r.run_date,
            }
        )
    return rows


def _none(x):
    """pandas' missing value (None, NaN) as None."""
    return None if x is None or (isinstance(x, float) and x != x) else x


def read_outcomes(root: str | Path, columns: list[str] | None = None) -> pa.Table:
    return table.read(root, "outcomes", columns)


def commit(rows: list[dict], root: Path, run_id: str) -> dict:
    """Append outcome rows of drafts without one, atomically (staging + manifest); the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    table.recover(root)
    done = set(read_outcomes(root, ["draft_id"]).column("draft_id").to_pylist())
    rows = [r for r in rows if r["draft_id"] not in done]
    t = pa.Table.from_pylist(rows, schema=arrow_schema("outcomes"))
    check_arrow(t, "outcomes")
    part = pads.partitioning(pa.schema([("run_date", pa.string())]), flavor="hive")
    pads.write_dataset(t, table.staging_dir(root, run_id), format="parquet", partitioning=part,
                       existing_data_behavior="overwrite_or_ignore")  # fmt: skip
    counts = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    return table.commit(root, run_id, {"kind": "outcomes", "rows": len(rows), "counts": counts,
                                       "committed_at": utcnow().isoformat()})  # fmt: skip


def run_outcomes(cfg: Config) -> dict:
    """Link the committed drafts of paths.drafts without an outcome to the final versions of
    their reports (every version in paths.table) and commit the outcomes; a summary."""
    from radgpt.writeback.drafts import read_drafts

    t0, run_id = time.perf_counter(), new_run_id("outcomes")
    root, drafts_root = cfg.path("outcomes"), cfg.path("drafts")
    summary: dict = {"run_id": run_id, "outcomes_dir": str(root), "linked": 0,
                     "counts": dict.fromkeys(OUTCOMES, 0)}  # fmt: skip
    if not drafts_root.is_dir() or not cfg.path("table").is_dir():
        return summary | {"drafts": 0, "awaiting_final": 0, "seconds": 0.0}
    n_drafts = len(read_drafts(drafts_root, ["draft_id"]))
    done = set(read_outcomes(root, ["draft_id"]).column("draft_id").to_pylist())
    keep = ~pads.field("draft_id").isin(sorted(done)) if done else None  # texts of those only
    todo = read_drafts(drafts_root, DRAFT_COLS, filter=keep).to_pandas()
    versions = table.read_reports(cfg, VERSION_COLS, all_versions=True).to_pandas()
    linked = link(todo, versions, cfg.outcomes)
    rows = score(linked, cfg.outcomes, run_id, utcnow())
    m = commit(rows, root, run_id) if rows else {"rows": 0, "counts": dict.fromkeys(OUTCOMES, 0)}
    summary.update(
        drafts=n_drafts,
        linked=m["rows"],
        counts=m["counts"],
        by_link={k: int(v) for k, v in linked["link"].value_counts().items()} if rows else {},
        awaiting_final=len(todo) - m["rows"],
        seconds=round(time.perf_counter() - t0, 3),
    )
    log.info("outcomes %s: %d drafts linked %s, %d await a final report", run_id,
             m["rows"], m["counts"], summary["awaiting_final"])  # fmt: skip
    return summary


def rates(outcomes: pa.Table, by: str) -> list[dict]:
    """Outcome rates grouped by `night` (the draft's run_date), `adapter` (id + registry version)
    or `flag` (each review flag, "(none)" for unflagged drafts: are flagged drafts edited more?)."""
    import polars as pl

    df = pl.from_arrow(outcomes)
    if not len(df):
        return []
    if by == "night":
        df, key = df.with_columns(pl.col("run_date").alias("night")), "night"
    elif by == "adapter":
        ver, name = pl.col("adapter_version"), pl.col("adapter_id").fill_null("base")
        both = pl.concat_str([name, pl.lit(" ("), ver, pl.lit(")")])
        name = pl.when(ver.is_not_null()).then(both).otherwise(name)
        df, key = df.with_columns(name.alias("adapter")), "adapter"
    elif by == "flag":
        flag = pl.when(pl.col("flags").list.len() > 0).then(pl.col("flags"))
        df = df.with_columns(flag.otherwise(pl.lit(["(none)"])).alias("flag")).explode("flag")
        key = "flag"
    else:
        raise ValueError(f"rates by {by!r}: night | adapter | flag")
    out = (
        df.group_by(key)
        .agg(
            pl.len().alias("n"),
            *((pl.col("outcome") == o).mean().round(4).alias(f"{o}_rate") for o in OUTCOMES),
            pl.col("edit_distance").mean().round(4).alias("mean_edit_distance"),
            pl.col("dangerous_miss").sum().alias("dangerous_misses"),
        )
        .sort(key)
    )
    return out.to_dicts()
