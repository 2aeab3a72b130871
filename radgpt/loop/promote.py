"""The promotion gate: the challenger against the champion on the same held-out reports.

    radgpt promote --config conf/local.yaml [--challenger challenger] [--champion champion]
                   [--reports N] [--out DIR] [--dry-run]

    from radgpt.loop.promote import run_promote
    d = run_promote(cfg)          # {"decision": "promoted" | "refused" | "unchanged", "criteria": [...]}

Both models draft the same reports: the first gate.reports (by report_id) eligible reports of
gate.split (default test: never trained on by either; newest version of each report), through the
same Ray Data drafting as the nightly job (radgpt.draft.run, into a work dir that is deleted:
report and draft text are not kept). They are scored like `radgpt evaluate` (radgpt.evaluation.score)
and the challenger is promoted only if all three hold:
- ROUGE-1 is not worse: the 95% paired bootstrap CI of mean(challenger - champion) over the reports
  does not lie below 0 (hi >= 0); with gate.rouge1_margin m, also lo >= -m (non-inferiority);
- finding agreement (the labeler's micro F1) is not worse: challenger >= champion - gate.f1_tolerance;
- dangerous misses (reports) are not more.
The champion is the registry alias `champion`; a registry without one is compared with
model.adapter (a path, or the base model alone when null). The decision, its table and the
evaluation report go to the registry (a run tagged radgpt.kind=promote; tags on the challenger's
version; alias champion moved on promotion) and to <out>: decision.json, promote.html and
evaluation/ (report.html, metrics.json, per_report.csv: ids and scores only).
"""

from __future__ import annotations

import html
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from radgpt.model import registry
from radgpt.runtime import code_version, new_run_id, utcnow, write_json_atomic

if TYPE_CHECKING:
    from radgpt.config import Config

log = logging.getLogger(__name__)
SYSTEMS = ("challenger", "champion")


def held_out(cfg: Config) -> pa.Table:
    """The gate's reports: the current view (latest version of each report, radgpt.table
    .read_reports), eligible, gate.split, first gate.reports by id."""
    from radgpt.table import read_reports

    t = read_reports(cfg)
    m = pc.and_(
        pc.fill_null(t.column("eligible"), False), pc.equal(t.column("split"), cfg.gate.split)
    )
    t = t.filter(m).sort_by("report_id")
    return t.slice(0, cfg.gate.reports) if cfg.gate.reports else t


def incumbent(cfg: Config, ref: str) -> dict:
    """The champion: the registry alias, else model.adapter (a path, or null: the base alone)."""
    got = registry.lookup(cfg, ref)
    if got is not None:
        return {"dir": str(got.dir), "version": got.version, "uri": got.uri,
                "adapter_id": got.adapter_id, "from": f"registry alias {ref}"}  # fmt: skip
    from radgpt.draft.drafter import adapter_dir
    from radgpt.model.spec import AdapterRecord

    d = adapter_dir(cfg)
    return {"dir": str(d) if d else None, "version": None, "uri": None,
            "adapter_id": AdapterRecord.load(d).adapter_id if d else None,
            "from": "model.adapter (the registry has no champion)"}  # fmt: skip


def _draft(cfg: Config, work: Path, name: str, adapter: str | None, version: str | None) -> dict:
    """{report_id: draft} of one model over the work table, by the batch drafting run (Ray Data,
    draft.* settings: GPU actors on a cluster) into a drafts table of its own."""
    from radgpt.config import Config as C
    from radgpt.draft.run import run_draft
    from radgpt.writeback.drafts import read_drafts

    c = C.from_json(cfg.to_json())
    c.paths.table, c.paths.drafts = str(work / "table"), str(work / f"drafts-{name}")
    c.draft.selection, c.draft.limit = "all", None
    c.model.adapter = f"{registry.REF}{version}" if version else adapter
    c.registry.champion_drafts = False
    run_draft(c)
    t = read_drafts(c.path("drafts"), ["report_id", "draft"])
    return dict(zip(t.column("report_id").to_pylist(), t.column("draft").to_pylist(), strict=True))


def _work_table(t: pa.Table, root: Path, gate_id: str) -> None:
    """The held-out rows as a reports table of their own (radgpt.table layout)."""
    import pyarrow.dataset as pads

    from radgpt import table
    from radgpt.schema import arrow_schema

    st = table.staging_dir(root, gate_id)
    part = pads.partitioning(
        pa.schema([("source", pa.string()), ("split", pa.string())]), flavor="hive"
    )
    pads.write_dataset(t.cast(arrow_schema("reports")), st, format="parquet", partitioning=part)
    table.commit(root, gate_id, {"kind": "gate", "rows": len(t)})


def criteria(m: dict, cfg: Config) -> list[dict]:
    """The decision table: one row per rule, with both systems' numbers and whether it holds."""
    g = cfg.gate
    sy = m["systems"]
    p = next(x for x in m["paired"] if (x["a"], x["b"], x["metric"]) ==
             ("challenger", "champion", "rouge1"))  # fmt: skip
    r1 = {s: sy[s]["rouge"]["rouge1"]["mean"] for s in SYSTEMS}
    ok = p["hi"] is not None and p["hi"] >= 0
    if g.rouge1_margin is not None:
        ok = ok and p["lo"] >= -g.rouge1_margin
    rule = "95% CI of the paired difference not below 0" + (
        f", lower end >= -{g.rouge1_margin}" if g.rouge1_margin is not None else ""
    )
    f1 = {s: sy[s]["findings"]["micro_f1"] for s in SYSTEMS}
    dm = {s: sy[s]["findings"]["dangerous_miss_reports"] for s in SYSTEMS}
    f1_ok = (f1["challenger"] or 0.0) >= (f1["champion"] or 0.0) - g.f1_tolerance
    return [
        {"criterion": "ROUGE-1", **r1, "difference": p["diff"], "ci": [p["lo"], p["hi"]],
         "rule": rule, "pass": bool(ok)},
        {"criterion": "finding agreement (micro F1)", **f1,
         "difference": None if None in f1.values() else f1["challenger"] - f1["champion"],
         "ci": None, "rule": f"challenger >= champion - {g.f1_tolerance}", "pass": bool(f1_ok)},
        {"criterion": "dangerous misses (reports)", **dm,
         "difference": dm["challenger"] - dm["champion"], "ci": None,
         "rule": "challenger <= champion", "pass": dm["challenger"] <= dm["champion"]},
    ]  # fmt: skip


def page(d: dict) -> str:
    """promote.html: the decision, its table and what was compared."""
    e = html.escape

    def f(x) -> str:
        if isinstance(x, list):
            return "[" + ", ".join(f(v) for v in x) + "]"
        return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)

    head = ["criterion", "challenger", "champion", "difference", "95% CI", "rule", "pass"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(f(r[k]))}</td>" for k in
                         ("criterion", "challenger", "champion", "difference", "ci", "rule"))
        + f"<td>{'yes' if r['pass'] else '<b>no</b>'}</td></tr>"
        for r in d["criteria"]
    )  # fmt: skip
    info = [f"{k}: {json.dumps(d[k], default=str)}"
            for k in ("challenger", "champion", "reports", "split", "gate_run_id", "created_at")]  # fmt: skip
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>RadGPT promotion gate</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-"
        "collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}"
        "th{background:#eee}</style></head><body>"
        f"<h1>Promotion gate: {e(d['decision'])}</h1><p>{e(d['reason'])}</p><ul>"
        + "".join(f"<li>{e(x)}</li>" for x in info)
        + "</ul><table><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + f"</tr>{rows}</table>"
        "<p>Both systems in full (ROUGE with CIs, findings per observation, lengths): "
        "<a href='evaluation/report.html'>evaluation/report.html</a></p></body></html>"
    )


def run_promote(
    cfg: Config,
    challenger: str = "challenger",
    champion: str = "champion",
    out: str | Path | None = None,
    dry_run: bool = False,
) -> dict:
    """Gate `challenger` (a registry alias or version) against `champion`; move the alias
    champion when it passes (not with dry_run). Returns the decision (also <out>/decision.json)."""
    from radgpt.evaluation.report import write
    from radgpt.evaluation.score import score

    t0, gid = time.perf_counter(), new_run_id("promote")
    out = Path(out) if out else cfg.path("runs") / gid
    chal = registry.resolve(cfg, challenger)
    champ = incumbent(cfg, champion)
    d: dict = {"gate_run_id": gid, "created_at": utcnow().isoformat(), "split": cfg.gate.split,
               "challenger": {"version": chal.version, "uri": chal.uri,
                              "adapter_id": chal.adapter_id, "from": challenger},
               "champion": {k: v for k, v in champ.items() if k != "dir"},
               "code_version": code_version(), "dry_run": dry_run}  # fmt: skip
    if chal.adapter_id == champ["adapter_id"] or chal.version == champ["version"]:
        d.update(decision="unchanged", reason="the challenger is the champion", criteria=[])
        write_json_atomic(out / "decision.json", d)
        return d
    refs = held_out(cfg)
    if not len(refs):
        raise ValueError(f"no eligible {cfg.gate.split} reports to gate on in {cfg.path('table')}")
    work = out / "_work"  # report and draft text: deleted below
    try:
        _work_table(refs, work / "table", gid)
        got = {
            s: _draft(cfg, work, s, a, v)
            for s, a, v in (("challenger", str(chal.dir), chal.version),
                            ("champion", champ["dir"], champ["version"]))
        }  # fmt: skip
        frame = refs.select(["report_id", "source", "split", "impression"]).to_pandas()
        frame = frame.rename(columns={"impression": "reference"})
        for s in SYSTEMS:
            frame[s] = frame["report_id"].map(got[s]).fillna("")
        m = score(frame, list(SYSTEMS), cfg.gate.bootstrap, cfg.gate.seed, compare=["challenger"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m.update(split=cfg.gate.split, eval_run_id=gid, created_at=d["created_at"],
             code_version=d["code_version"], config_hash=cfg.hash())  # fmt: skip
    write(out / "evaluation", m)
    rows = criteria(m, cfg)
    passed = all(r["pass"] for r in rows)
    failed = [r["criterion"] for r in rows if not r["pass"]]
    d.update(reports=int(m["n"]), criteria=rows, decision="promoted" if passed else "refused",
             reason="every criterion holds" if passed else "fails: " + ", ".join(failed))  # fmt: skip
    if dry_run and passed:
        d["decision"] = "would promote"
    write_json_atomic(out / "decision.json", d)
    (out / "promote.html").write_text(page(d))
    _record(cfg, d, chal, champ, out, passed and not dry_run)
    d.update(out=str(out), seconds=round(time.perf_counter() - t0, 2))
    write_json_atomic(out / "decision.json", d)  # + the registry run it went to
    log.info("gate %s: %s (%s) -> %s", gid, d["decision"], d["reason"], out)
    return d


def _record(cfg: Config, d: dict, chal, champ: dict, out: Path, promote: bool) -> None:
    """The decision into the registry: a run with the table and report, tags on the challenger's
    version (and the evaluation on its training run), the champion alias when promoted."""
    metrics = []
    for r in d["criteria"]:
        key = r["criterion"].split(" (")[0].replace(" ", "_").replace("-", "").lower()
        metrics += [(f"{s}_{key}", r[s], 0) for s in SYSTEMS if r[s] is not None]
    params = {"challenger": chal.uri, "champion": champ["uri"] or str(champ["dir"]),
              "split": d["split"], "reports": str(d["reports"]),
              "gate": json.dumps(cfg.gate.model_dump(mode="json"), sort_keys=True)}  # fmt: skip
    tags = {"radgpt.kind": "promote", "decision": d["decision"], "challenger_version": chal.version,
            "champion_version": str(champ["version"])}  # fmt: skip
    d["registry_run_id"] = registry.log_run(cfg, d["gate_run_id"], params, metrics, tags, {"": out})
    registry.tag_version(cfg, chal.version, {"gate.decision": d["decision"],
                                             "gate.run_id": d["gate_run_id"],
                                             "gate.reason": d["reason"]})  # fmt: skip
    c = registry.client(cfg)
    run_id = c.get_model_version(cfg.registry.model, chal.version).run_id
    if run_id:  # the evaluation next to the adapter it judged
        c.log_artifacts(run_id, str(out / "evaluation"), f"evaluation/{d['gate_run_id']}")
    if promote:
        registry.set_alias(cfg, "champion", chal.version)
        if champ["version"]:
            registry.tag_version(cfg, champ["version"], {"gate.replaced_by": chal.version})
