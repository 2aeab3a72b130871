"""Training data: canonical table -> Ray Data splits -> instruction records -> token batches.

Pure functions (tested in tests/test_train.py); the Ray/torch parts run inside the workers.
    ds = read_split(table_dir, "train")                 # eligible rows of one split, Ray Dataset
    recs = records(rows, task="impression")             # {task, instruction, input, output, report_id}
    ex, stats = encode(recs, tok, tpl, cutoff_len=512)  # token ids + labels (-100 on the prompt)
    order = batches([len(e["input_ids"]) for e in ex], micro_batch=4, seed=42, epoch=0)
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

from radgpt.model import prompts

log = logging.getLogger(__name__)
COLUMNS = ["report_id", "findings", "impression", "eligible", "split", "pair_sha256",
           "source_sha256"]  # fmt: skip


def table_files(root: str | Path) -> list[Path]:
    """Committed Parquet files of the reports table (radgpt.table manifests)."""
    from radgpt.table import committed_files

    root = Path(root)
    files = [p for p in committed_files(root) if p.is_file()]
    if not files:
        raise FileNotFoundError(
            f"no committed rows in the reports table {root}: run `radgpt ingest` first (or pass --data)"
        )
    return files


def _keep(batch, split: str, latest: dict[str, str] | None = None, since=None):
    """Eligible rows of `split` with both texts, each report's latest version only (`latest`:
    radgpt.table.latest_versions; a corrected report's earlier rows are not trained on); with
    `since` = (time, inclusive) only those whose latest version was ingested then or later (a
    report corrected since counts, its first version's ingest time does not matter)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from radgpt.table import current_mask

    m = pc.and_(pc.fill_null(batch["eligible"], False), pc.equal(batch["split"], split))
    m = pc.and_(m, pc.and_(pc.is_valid(batch["findings"]), pc.is_valid(batch["impression"])))
    if latest:
        m = pc.and_(m, current_mask(batch["report_id"], batch["source_sha256"], latest))
    if since is not None:
        at = pa.scalar(since[0], batch.schema.field("ingested_at").type)
        cmp = pc.greater_equal if since[1] else pc.greater
        m = pc.and_(m, pc.fill_null(cmp(batch["ingested_at"], at), False))
    return batch.filter(m).select(COLUMNS)


def read_split(root: str | Path, split: str, files: list[Path] | None = None, since=None):
    """Eligible rows of `split` as a Ray Dataset (hive partitions source=/split= under root), the
    current view: the latest version of each report (radgpt.table.read_reports).

    since: (time, inclusive) or None (radgpt.train.sources.since_time): only the reports whose
    latest version was ingested at/after (inclusive) or after that time."""
    import ray
    from ray.data.datasource import Partitioning

    from radgpt.table import latest_versions

    files = files or table_files(root)
    mine = [p for p in files if f"split={split}" in p.relative_to(root).parts]  # partition pruning
    if not mine:  # e.g. no validate split in this table
        return ray.data.from_items([])
    ds = ray.data.read_parquet(
        [str(p) for p in mine],
        partitioning=Partitioning("hive", base_dir=str(root)),
        columns=[*COLUMNS, "ingested_at"],
    )
    latest = latest_versions(root, files)  # corrected reports only: small
    kw = {"split": split, "latest": latest, "since": since}
    return ds.map_batches(_keep, batch_format="pyarrow", fn_kwargs=kw)


def snapshot(root: str | Path, files: list[Path], rows: dict[str, list[dict]]) -> dict:
    """Dataset provenance: files (size), rows per split, content hash of (report_id, pair_sha256)."""
    h = hashlib.sha256()
    counts = {}
    for split in sorted(rows):
        counts[split] = len(rows[split])
        for r in sorted(rows[split], key=lambda r: r["report_id"]):
            h.update(f"{split}\t{r['report_id']}\t{r.get('pair_sha256', '')}\n".encode())
    return {
        "table": str(Path(root).resolve()),
        "files": [{"path": str(p.relative_to(root)), "bytes": p.stat().st_size} for p in files],
        "rows": counts,
        "row_count": sum(counts.values()),
        "sha256": h.hexdigest(),
    }


def records(rows: list[dict], task: str = "impression") -> list[dict]:
    """Instruction records, sorted by report_id (a fixed order whatever the shard order was)."""
    ins = prompts.instruction(task)
    out = [
        {
            "task": task,
            "instruction": ins,
            "input": r["findings"],
            "output": r["impression"],
            "report_id": r["report_id"],
        }
        for r in rows
    ]
    return sorted(out, key=lambda r: r["report_id"])


def encode(
    recs: list[dict], tok, tpl, cutoff_len: int, retriever=None, k: int = 0
) -> tuple[list[dict], dict]:
    """Tokenize records; retrieved neighbours (self excluded) go into the prompt when k > 0.

    Returns examples {report_id, input_ids, labels} and stats {n, truncated, dropped}.
    """
    shots = [[] for _ in recs]
    if retriever is not None and k > 0 and recs:
        shots = retriever.query(
            [r["input"] for r in recs], k, exclude_ids=[r["report_id"] for r in recs]
        )
    out, truncated, dropped = [], 0, 0
    for r, ex in zip(recs, shots, strict=True):
        enc = prompts.encode(tok, tpl, r["task"], r["input"], r["output"], ex, cutoff_len)
        if enc is None:  # the response alone does not fit cutoff_len
            dropped += 1
            continue
        ids, labels, cut = enc
        truncated += cut
        out.append({"report_id": r["report_id"], "input_ids": ids, "labels": labels})
    return out, {"n": len(out), "truncated": truncated, "dropped": dropped}


def batches(
    lengths: list[int], micro_batch: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[list[int]]:
    """Micro-batches of example indices for one epoch, a pure function of (seed, epoch).

    group_by_length: shuffle, then sort by length inside windows of 64 micro-batches and shuffle
    the micro-batch order: little padding, still random (HF Trainer's group_by_length idea).
    """
    rng = random.Random(seed * 100_003 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if group_by_length:
        win = micro_batch * 64
        idx = [
            i
            for s in range(0, len(idx), win)
            for i in sorted(idx[s : s + win], key=lambda i: -lengths[i])
        ]
    out = [idx[s : s + micro_batch] for s in range(0, len(idx), micro_batch)]
    if group_by_length:
        rng.shuffle(out)
    return out


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-padded tensors: input_ids/labels/attention_mask (B, T_max); labels -100 on padding."""
    import torch

    t = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), t), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), t), prompts.IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), t), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
