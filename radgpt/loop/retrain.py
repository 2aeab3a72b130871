"""Retrain + gate: the reports signed since the champion, from the champion, then `radgpt promote`.

    radgpt retrain --config conf/local.yaml [--since champion] [--init-adapter registry:champion]
                   [--max-steps N] [--dry-run]
    (Kubernetes: the suspended RayJob radgpt-retrain, docs/operations.md)

    from radgpt.loop.retrain import run_retrain
    run_retrain(cfg)     # {"train": {...}, "gate": {...decision...}}

1. train (radgpt.train.run.run_train, the same recipe and record): on the train split's rows
   ingested since train.since (default here: "champion", the rows that arrived after the
   champion's training began; every row when the registry has no champion), starting from
   train.init_adapter (default here: the champion; with no champion, model.adapter when it is a
   path, else a fresh LoRA on the base). The new adapter is registered, aliased challenger.
2. gate (radgpt.loop.promote.run_promote): the challenger against the champion on the held-out
   split; the alias champion moves only when the challenger is not worse.
Continuing from the champion on the new rows only is the simple choice (hours, not days, on the
GPUs); it can drift from older data, which is what the gate's held-out test split guards against.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from radgpt.model import registry

if TYPE_CHECKING:
    from radgpt.config import Config

log = logging.getLogger(__name__)


def plan(cfg: Config) -> tuple[str | None, str | None]:
    """(train.since, train.init_adapter) of a retraining: the configured ones, else the
    champion's (with no champion: every row, from model.adapter or the base)."""
    champ = registry.lookup(cfg, "champion")
    since = cfg.train.since or ("champion" if champ else None)
    init = cfg.train.init_adapter
    if init is None:
        if champ:
            init = f"{registry.REF}champion"
        elif cfg.model.adapter and not registry.is_ref(cfg.model.adapter):
            init = cfg.model.adapter
    return since, init


def run_retrain(cfg: Config, out=None, dry_run: bool = False) -> dict:
    """Train a challenger on the new rows (plan) and gate it against the champion."""
    from radgpt.config import Config as C
    from radgpt.loop.promote import run_promote
    from radgpt.train.run import run_train

    since, init = plan(cfg)
    c = C.from_json(cfg.to_json())
    c.train.since, c.train.init_adapter = since, init
    c.registry.track = c.registry.register_versions = True  # the gate needs a registered version
    log.info("retrain: rows since %s, from %s", since or "the beginning", init or "the base")
    rec = run_train(c, out=out)
    version = rec["registry"]["version"]
    train = {
        "adapter_id": rec["adapter_id"],
        "adapter_dir": rec["adapter_dir"],
        "registry": rec["registry"],
        "since": rec["dataset"].get("since"),
        "rows": rec["dataset"]["rows"],
        "init_adapter": rec["run"].get("init_adapter"),
        "metrics": {k: rec["metrics"].get(k) for k in ("steps", "first_loss", "final_loss")},
    }
    gate = run_promote(c, challenger=version, dry_run=dry_run)
    return {"train": train, "gate": gate}
