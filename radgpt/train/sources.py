"""What a (re)training starts from: the rows since a point in time, and an initial adapter.

    from radgpt.train.sources import since_time, init_adapter
    since_time(cfg, "2026-11-01")          # datetime: rows ingested at or after it
    since_time(cfg, "ingest-2026...")      # rows ingested after that ingest run
    since_time(cfg, "champion")            # rows ingested after the champion's training began
    init_adapter(cfg, "registry:champion", base_sha)   # {"dir", "adapter_id", "registry"} checked

`radgpt train --since X --init-adapter Y` (train.since, train.init_adapter): the train split of the
reports table's current view (the latest version of each report, radgpt.table.read_reports)
narrowed to the reports whose latest version was ingested since X (its ingested_at), fine-tuned from Y's LoRA weights with the same recipe; the validation split stays
whole and the test split is never read (docs/loop.md).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from radgpt.config import Config, ConfigError


def since_time(cfg: Config, since: str | None) -> tuple[dt.datetime, bool] | None:
    """(time, inclusive) rows must be ingested at/after (inclusive) or after; None = every row."""
    if not since:
        return None
    from radgpt import table

    s = since.strip()
    if s.startswith("ingest-"):
        for m in table.manifests(cfg.path("table")):
            if m.get("run_id") == s:
                return _utc(dt.datetime.fromisoformat(m["started_at"])), False
        raise ConfigError(f"train.since: no committed ingest run {s} in {cfg.path('table')}")
    if s in ("champion", "registry:champion"):
        from radgpt.model import registry
        from radgpt.model.spec import AdapterRecord

        got = registry.resolve(cfg, "champion")
        run = AdapterRecord.load(got.dir).run or {}
        if not run.get("started_at"):
            raise ConfigError(f"train.since: the champion {got.uri} records no training start")
        return _utc(dt.datetime.fromisoformat(run["started_at"])), False
    try:
        return _utc(dt.datetime.fromisoformat(s)), True
    except ValueError:
        raise ConfigError(
            f"train.since: {since!r} is neither an ISO date/time, an ingest run id nor 'champion'"
        ) from None


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def init_adapter(cfg: Config, raw: str | None, base_sha: str) -> dict | None:
    """The adapter training starts from, checked against this run: same base weights, method and
    LoRA shape (r, alpha, target modules), else an error naming the difference."""
    if not raw:
        return None
    from radgpt.model import registry
    from radgpt.model.spec import AdapterRecord

    ref = None
    if registry.is_ref(raw):
        got = registry.resolve(cfg, raw)
        d, ref = got.dir, got.uri
    else:
        d = cfg.model_path(raw)
        if not d.is_dir():
            raise FileNotFoundError(f"train.init_adapter: adapter directory not found: {d}")
    rec = AdapterRecord.load(d)
    problems = []
    if rec.base_sha256 and rec.base_sha256 != base_sha:
        problems.append(f"trained on base {rec.base_sha256[:12]}, not {base_sha[:12]}")
    conf = rec.config or {}
    if (rec.method or "lora") != cfg.train.method:
        problems.append(f"method {rec.method} != train.method {cfg.train.method}")
    if cfg.train.method == "lora":
        mine = json.loads(cfg.lora.model_dump_json())
        theirs = conf.get("lora") or _peft_lora(d)
        for k in ("r", "lora_alpha", "target_modules"):
            a, b = theirs.get(k), mine[k]
            if k == "target_modules" and a is not None:
                a, b = sorted(a), sorted(b)
            if a != b:
                problems.append(f"lora.{k} {a} != {b}")
    if problems:
        raise ConfigError(f"train.init_adapter {raw}: " + "; ".join(problems))
    return {"dir": str(d), "adapter_id": rec.adapter_id, "registry": ref}


def _peft_lora(d: Path) -> dict:
    p = d / "adapter_config.json"
    return json.loads(p.read_text()) if p.is_file() else {}
