"""The nightly job: sample (if missing) -> base model -> ingest (incremental) -> draft -> write-back
-> outcomes (drafts whose final reports arrived: radgpt.loop.outcomes).

    radgpt nightly --config conf/local.yaml      # what `make run` runs

Prints and saves a run summary (counts, throughput, flags, failures, seconds per step) as
<paths.runs>/<run_id>.json; exits non-zero when a step fails (the summary names it). Steps commit
atomically, so a failed night leaves the tables as they were and the next night picks up the rest.
Drafting uses model.adapter, or the model registry's champion with registry.champion_drafts
(radgpt.draft.drafter.adapter_source); the summary names the registry version.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from radgpt.config import Config
from radgpt.runtime import code_version, new_run_id, utcnow, write_json_atomic

log = logging.getLogger("radgpt.nightly")


def sample_inputs(cfg: Config) -> bool:
    """True when ingest.inputs names paths.sample (the embedded default reads the sample)."""
    want = cfg.path("sample")
    return any(
        Path(raw.format(root=cfg.paths.root)).expanduser().resolve() == want
        for raw in cfg.ingest.inputs
    )


def ensure_sample(cfg: Config) -> dict | None:
    out = cfg.path("sample")
    if not sample_inputs(cfg) or (out.is_dir() and any(out.iterdir())):
        return None
    from radgpt.sample.write import write_sample

    log.info("sample input missing: writing the synthetic sample to %s", out)
    m = write_sample(out)
    return {"path": str(out), "reports": m["totals"]["reports"]}


def run_nightly(cfg: Config, spark=None) -> dict:
    """Run every step in order; stops at the first failure. Returns the summary (status ok|failed)."""
    import ray

    from radgpt.draft.run import run_draft
    from radgpt.ingest.run import run_ingest
    from radgpt.loop.outcomes import run_outcomes
    from radgpt.model.base import ensure_default_model
    from radgpt.writeback.fhir import run_writeback

    run_id, t_all = new_run_id("nightly"), time.perf_counter()
    s: dict = {
        "run_id": run_id,
        "started_at": utcnow().isoformat(),
        "code_version": code_version(),
        "config_hash": cfg.hash(),
        "status": "ok",
        "steps": {},
        "failures": [],
    }
    ray_was_up = ray.is_initialized()

    def ingest():
        from radgpt.cluster import active_spark, stop_spark

        before = active_spark()
        try:  # Spark starts only when an input is to be read (not on a night of no new files)
            m = run_ingest(cfg, spark=spark)
        finally:
            sp = active_spark()
            if spark is None and sp is not None and sp is not before:
                stop_spark(sp)  # the session this step started: free the JVM before drafting
        return {"ingest_run_id": m["run_id"], "counts": m.get("counts", {}).get("totals")}

    def draft():
        return run_draft(cfg)

    def writeback():
        rid = s["steps"]["draft"]["result"]["run_id"]
        if not s["steps"]["draft"]["result"].get("committed"):
            return {"exported": []}
        return {"exported": run_writeback(cfg, run_id=rid)}

    steps = [
        ("sample", lambda: ensure_sample(cfg)),
        ("model", lambda: {"base": str(ensure_default_model(cfg))}),
        ("ingest", ingest),
        ("draft", draft),
        ("writeback", writeback),
        ("outcomes", lambda: run_outcomes(cfg)),  # last: a failure here never holds up drafts
    ]
    try:
        for name, fn in steps:
            log.info("nightly %s: step %s ...", run_id, name)
            t0 = time.perf_counter()
            try:
                res = fn()
            except Exception as e:  # recorded, summary saved, non-zero exit
                log.exception("nightly %s: step %s failed", run_id, name)
                s["failures"].append({"step": name, "error": type(e).__name__, "message": str(e)})
                s["status"] = "failed"
                break
            s["steps"][name] = {"seconds": round(time.perf_counter() - t0, 3), "result": res}
            log.info("nightly %s: step %s done in %.1fs", run_id, name, time.perf_counter() - t0)
    finally:
        if not ray_was_up and ray.is_initialized():
            ray.shutdown()
    s["finished_at"] = utcnow().isoformat()
    s["seconds"] = round(time.perf_counter() - t_all, 3)
    s["path"] = str(write_json_atomic(cfg.path("runs") / f"{run_id}.json", s))
    return s


def brief(s: dict) -> str:
    """A few lines for the terminal: counts, throughput, flags, failures (never report text)."""
    lines = [f"nightly {s['run_id']}: {s['status']} in {s['seconds']:.1f}s  ({s['path']})"]
    st = s["steps"]
    if "ingest" in st:
        lines.append(f"  ingest   {json.dumps(st['ingest']['result'].get('counts'))}")
    if "draft" in st:
        d = st["draft"]["result"]
        lines.append(
            f"  draft    selected {d['selected']}  committed {d.get('committed', 0)}  "
            f"{'executor ' + d['executor'] + '  ' if d.get('executor') else ''}"
            f"{d.get('reports_per_s', 0)} reports/s  {d.get('tokens_per_s', 0)} tokens/s  "
            f"flags {json.dumps(d.get('flags', {}))}"
        )
    if "writeback" in st:
        n = sum(x["resources"] for x in st["writeback"]["result"]["exported"])
        lines.append(f"  fhir     {n} resources")
    if "outcomes" in st:
        o = st["outcomes"]["result"]
        lines.append(f"  outcomes linked {o['linked']} {json.dumps(o['counts'])}  "
                     f"awaiting a final report {o.get('awaiting_final', 0)}")  # fmt: skip
    lines += [f"  FAILED   {f['step']}: {f['error']}: {f['message']}" for f in s["failures"]]
    return "\n".join(lines)
