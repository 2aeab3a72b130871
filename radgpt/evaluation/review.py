"""Expert rubric (paper §4): blinded review packets out, filled packets of several raters back in.

    radgpt review export --drafts var/drafts --data var/table --split test -k 25 --seed 7 \
        --baselines nn --out var/review/p1          # packet.csv + packet.html; key: var/review/p1.key.json
    radgpt review import --key var/review/p1.key.json ratings-*.csv --out var/review/p1-results

Export samples K reports (seeded) that every draft system covers and pairs each with every system,
the reference Impression included as one system; the K x S items are shuffled (seeded) and named
item-001... so the packet says nothing about which system wrote what. Items that drafting's
clinical flags (omits_finding / adds_finding / reads_normal, computed alike for every system's text)
come first, with what to check and the finding's words highlighted. The unblinding key is a
separate file next to (not inside) the packet dir. packet.html (radgpt.evaluation.packet) is one
offline page (inline CSS/JS, no CDN): a radiologist scores 1-5 for each rubric metric plus free text, and "Save" downloads
ratings-<packet>-<rater>.csv (work in progress is kept in the browser's localStorage). packet.csv
is the same packet for a spreadsheet. Import reads any number of such files, unblinds them with
the key, and writes review.json/review.md/review.png: mean and SD per metric and system (the
paper's Figure 3) and inter-rater agreement (quadratic-weighted Cohen's kappa per metric).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radgpt.runtime import utcnow, write_json_atomic

log = logging.getLogger("radgpt.evaluation.review")
METRICS = ["understandability", "coherence", "relevance", "conciseness", "clinical_utility"]
TITLES = ["Understandability", "Coherence", "Relevance", "Conciseness", "Clinical Utility"]
RATING_COLS = ["packet_id", "item_id", "rater", *METRICS, "comment"]
PACKET_COLS = ["packet_id", "item_id", "findings", "impression", "flags", "check", "rater",
               *METRICS, "comment"]  # fmt: skip
_SAYS = {"omits_finding": "the Findings state it, the Impression does not",
         "adds_finding": "the Impression states it, the Findings do not"}  # fmt: skip
READS_NORMAL = (
    "the Impression reads normal; radiologists usually state a pathology for such Findings"
)


def checks(findings: str, impression: str, observations: Sequence[str]) -> tuple[list, dict]:
    """(what to check, in words; {"findings"|"impression": [[start, end], ...]} to highlight)."""
    from radgpt.model.labeler import mentions

    said, marks = [], {"findings": set(), "impression": set()}
    for x in observations:
        flag, _, obs = x.partition(":")
        said.append(f"{obs}: {_SAYS.get(flag, flag)}")
        marks["findings"].update(mentions(findings, obs))
        marks["impression"].update(mentions(impression, obs))
    return said, {k: [list(s) for s in sorted(v)] for k, v in marks.items()}


def build_packet(
    frame: pd.DataFrame,
    systems: Sequence[str],
    k: int,
    seed: int,
    packet_id: str,
    review=None,
) -> tuple[list[dict], dict]:
    """(items, key): K sampled reports x systems, shuffled; frame has findings + one col/system.

    review(findings, impression) -> radgpt.draft.flags.Review: the same check for every system's
    text (blinding holds: a flag says nothing about who wrote the text); flagged items come first,
    in their shuffled order, with the observations behind the flags highlighted.
    """
    if k < 1 or frame.empty:
        raise ValueError(f"review packet needs k >= 1 and reports (k={k}, reports={len(frame)})")
    rng = np.random.default_rng(seed)
    ids = sorted(frame["report_id"])
    pick = sorted(rng.choice(ids, size=min(k, len(ids)), replace=False).tolist())
    rows = frame.set_index("report_id").loc[pick]
    pairs = [(rid, s) for rid in pick for s in systems]
    order = rng.permutation(len(pairs))
    texts = [
        (rows.at[pairs[j][0], "findings"], rows.at[pairs[j][0], pairs[j][1]] or "") for j in order
    ]
    got = [review(f, i) if review else None for f, i in texts]
    first = sorted(range(len(order)), key=lambda n: not (got[n] and got[n].flags))  # stable
    items, key = [], {}
    for n, m in enumerate(first, 1):
        rid, s = pairs[order[m]]
        (f, imp), r = texts[m], got[m]
        item_id = f"item-{n:03d}"
        said, marks = checks(f, imp, r.observations) if r else ([], {})
        if r and "reads_normal" in r.flags:
            said.append(READS_NORMAL)
        items.append({"packet_id": packet_id, "item_id": item_id, "findings": f, "impression": imp,
                      "flags": "; ".join(r.flags) if r else "", "check": "; ".join(said),
                      "marks": marks})  # fmt: skip
        key[item_id] = {"report_id": rid, "system": s}
    return items, {"packet_id": packet_id, "seed": seed, "k": len(pick), "systems": list(systems),
                   "metrics": METRICS, "created_at": utcnow().isoformat(), "items": key}  # fmt: skip


def write_csv(items: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PACKET_COLS, extrasaction="ignore")
        w.writeheader()
        w.writerows(
            {**it, "rater": "", **dict.fromkeys(METRICS, ""), "comment": ""} for it in items
        )


def read_ratings(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Ratings files (HTML-saved CSV, filled packet.csv, or JSON records) -> one long frame."""
    frames = []
    for p in map(Path, paths):
        try:
            if p.suffix == ".json":
                df = pd.read_json(p)
            else:
                df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as e:
            raise ValueError(f"{p}: not a ratings file ({str(e).strip()})") from None
        missing = [c for c in ("packet_id", "item_id", *METRICS) if c not in df.columns]
        if missing:
            raise ValueError(f"{p}: not a ratings file, missing columns {missing}")
        df = df.astype({"packet_id": str, "item_id": str})
        rater = (
            df["rater"].astype(str).str.strip() if "rater" in df else pd.Series("", index=df.index)
        )
        df["rater"] = rater.where(rater.ne("") & rater.ne("nan"), p.stem)
        for m in METRICS:
            raw = df[m].astype(str).str.strip().replace({"nan": "", "None": ""})
            v = pd.to_numeric(raw.where(raw.ne("")), errors="coerce")
            bad = raw.ne("") & ~v.isin([1, 2, 3, 4, 5])
            if bad.any():
                raise ValueError(
                    f"{p}: {m} must be 1-5 or blank; bad rows {df.loc[bad, 'item_id'].tolist()[:5]}"
                )
            df[m] = v
        df["comment"] = df["comment"].fillna("").astype(str) if "comment" in df else ""
        df["file"] = p.name
        frames.append(df[[*RATING_COLS, "file"]])
    if not frames:
        raise ValueError("no ratings files given")
    out = pd.concat(frames, ignore_index=True)
    dup = out.duplicated(["rater", "item_id"])
    if dup.any():
        raise ValueError(f"rater(s) {sorted(out.loc[dup, 'rater'].unique())} rated an item twice")
    return out


def unblind(ratings: pd.DataFrame, key: dict) -> pd.DataFrame:
    """Add report_id and system from the key; refuses ratings of another packet."""
    other = sorted(set(ratings["packet_id"]) - {key["packet_id"]})
    if other:
        raise ValueError(f"ratings for packet(s) {other}, but the key is for {key['packet_id']}")
    unknown = sorted(set(ratings["item_id"]) - set(key["items"]))
    if unknown:
        raise ValueError(f"items not in the key: {unknown[:5]}")
    k = pd.DataFrame.from_dict(key["items"], orient="index")
    return ratings.join(k, on="item_id")


def summarize(df: pd.DataFrame) -> dict:
    """Mean/SD/n per system and metric; quadratic-weighted kappa per metric over rater pairs."""
    from sklearn.metrics import cohen_kappa_score

    per = {
        s: {m: {"mean": _num(g[m].mean()), "sd": _num(g[m].std(ddof=1)), "n": int(g[m].notna().sum())}
            for m in METRICS}
        for s, g in df.groupby("system", sort=True)
    }  # fmt: skip
    raters = sorted(df["rater"].unique())
    kappa: dict = {}
    for m in METRICS:
        wide = df.pivot(index="item_id", columns="rater", values=m)
        pairs = {}
        for a, b in itertools.combinations(raters, 2):
            both = wide[[a, b]].dropna()
            if len(both) < 2:
                continue
            k = cohen_kappa_score(both[a].astype(int), both[b].astype(int), labels=[1, 2, 3, 4, 5],
                                  weights="quadratic")  # fmt: skip
            pairs[f"{a} vs {b}"] = {"kappa": _num(k), "items": int(len(both))}
        vals = [p["kappa"] for p in pairs.values() if p["kappa"] is not None]
        kappa[m] = {"mean": _num(np.mean(vals)) if vals else None, "pairs": pairs}
    return {"raters": raters, "items_rated": int(len(df)), "systems": per, "kappa": kappa}


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def plot(summary: dict, path: Path) -> Path:
    """Figure-3 style: mean score per rubric metric, one bar per system, SD as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(summary["systems"])
    fig, ax = plt.subplots(figsize=(8, 3.8))
    w = 0.8 / max(len(systems), 1)
    for i, s in enumerate(systems):
        v = summary["systems"][s]
        ax.bar(np.arange(len(METRICS)) + i * w, [v[m]["mean"] or 0 for m in METRICS], w,
               yerr=[v[m]["sd"] or 0 for m in METRICS], capsize=3, label=s)  # fmt: skip
    ax.set_xticks(np.arange(len(METRICS)) + w * (len(systems) - 1) / 2, TITLES, fontsize=9)
    ax.set_ylim(0, 5.5)
    ax.set_ylabel("score 1-5 (mean, SD)")
    ax.set_title(f"Expert rubric, {len(summary['raters'])} rater(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(s: dict) -> str:
    lines = [f"# Expert rubric: {len(s['raters'])} rater(s), {s['items_rated']} ratings", "",
             "| system | " + " | ".join(TITLES) + " |", "|---|" + "---|" * len(METRICS)]  # fmt: skip
    for sy, v in s["systems"].items():
        cells = [f"{v[m]['mean']:.2f} ± {v[m]['sd'] or 0:.2f} (n={v[m]['n']})" if v[m]["mean"] is not None
                 else "n/a" for m in METRICS]  # fmt: skip
        lines.append(f"| {sy} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Inter-rater agreement (quadratic-weighted Cohen's kappa, mean over rater pairs):",
        "",
    ]
    for m, t in zip(METRICS, TITLES, strict=True):
        kap = s["kappa"][m]["mean"]
        lines.append(f"- {t}: {'n/a' if kap is None else f'{kap:.3f}'}")
    return "\n".join(lines + ["", "![rubric](review.png)", ""])


def consistency_check(cfg):
    """review(findings, impression): drafting's clinical flags (radgpt.draft.flags.review with
    the configured adapter's carry rates, draft.carry_threshold and draft.abnormal_threshold:
    omits_finding, adds_finding, reads_normal) for any system's text."""
    from radgpt.draft.flags import CONSISTENCY, Review, review
    from radgpt.model.carry import CarryRates

    adapter = cfg.model_path(cfg.model.adapter) if cfg.model.adapter else None
    carry = CarryRates.for_adapter(adapter, cfg.path("table"))
    usual, t = carry.usual(cfg.draft.carry_threshold), cfg.draft.abnormal_threshold
    keep = (*CONSISTENCY, "reads_normal")

    def check(findings: str, impression: str) -> Review:
        ab = carry.reads_abnormal([findings], t)[0]
        r = review(findings, impression, truncated=False, instruction="", usual=usual, abnormal=ab)
        return Review([f for f in r.flags if f in keep], r.observations)

    return check


def run_export(cfg, split="test", k=20, out=None, key=None, run_ids=None) -> dict:
    """Write packet.csv + packet.html into out and the key file outside it; returns the key.

    K reports of paths.table drafted in paths.drafts, seed eval.seed, systems: the reference, the
    drafts and the eval.baselines.
    """
    from radgpt.evaluation.baselines import run_baselines
    from radgpt.evaluation.packet import packet_html
    from radgpt.evaluation.run import join, select_drafts, select_refs
    from radgpt.table import read_reports
    from radgpt.writeback.drafts import read_drafts

    seed, baselines = cfg.eval.seed, list(cfg.eval.baselines)
    out = Path(out) if out else cfg.path("runs") / "review"
    key_path = Path(key) if key else out.parent / f"{out.name}.key.json"
    if key_path.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"the key {key_path} must not be inside the packet dir {out}")
    all_refs = read_reports(cfg)
    refs = select_refs(all_refs, None if split in (None, "all") else split.split(","))
    d = select_drafts(read_drafts(cfg.path("drafts")), run_ids)
    frame, draft_systems = join(refs, d)
    if frame.empty:
        raise ValueError("no reports with both a reference and a draft to review")
    if baselines:
        train = select_refs(all_refs, ["train"])
        for name, p in run_baselines(list(baselines), train["findings"].tolist(),
                                     train["reference"].tolist(), frame["findings"].tolist(), cfg).items():  # fmt: skip
            frame[name] = p
    systems = ["reference", *draft_systems, *baselines]
    packet_id = f"rv-{uuid.uuid4().hex[:8]}"
    items, k_ = build_packet(frame, systems, k, seed, packet_id, consistency_check(cfg))
    k_["drafts_run_ids"] = sorted(
        d[d["report_id"].isin(frame["report_id"])]["run_id"].unique().tolist()
    )
    out.mkdir(parents=True, exist_ok=True)
    write_csv(items, out / "packet.csv")
    (out / "packet.html").write_text(packet_html(items, packet_id))  # radgpt.evaluation.packet
    write_json_atomic(key_path, k_)
    log.info("review packet %s: %d reports x %d systems -> %s (key %s)", packet_id, k_["k"],
             len(systems), out, key_path)  # fmt: skip
    return {**k_, "packet_dir": str(out), "key_path": str(key_path)}


def run_import(key: str | Path, files: Sequence[str | Path], out: str | Path) -> dict:
    """Unblind the raters' files with the key; write review.json, review.md, review.png, ratings.csv."""
    k = json.loads(Path(key).read_text())
    df = unblind(read_ratings(files), k)
    s = summarize(df)
    s.update(packet_id=k["packet_id"], files=[Path(f).name for f in files])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["file"]).to_csv(out / "ratings.csv", index=False)
    plot(s, out / "review.png")
    (out / "review.md").write_text(markdown(s))
    write_json_atomic(out / "review.json", s)
    log.info(
        "review %s: %d ratings from %d raters -> %s", k["packet_id"], len(df), len(s["raters"]), out
    )
    return s
