"""The ingest's work units (the driver's plan, radgpt.ingest.run): how many parse tasks, and which
units each one parses, without report text and without any task scanning all the units.

`write_units` streams every input's units (names, sizes, row/line/member ranges) into one
JSON-lines file, `<partition>\\t<input>\\t<unit json>` a line, partitions in order: each takes a
contiguous run of units of about equal bytes (neighbouring folders share a task). It returns the
file's index, one `(offset, bytes, units)` per partition: task i seeks to its offset and reads its
own lines only (radgpt.ingest.executor.parse_fn), so planning work grows with the units, not with
units x tasks.

The number of partitions (`partitions`) comes from the input's bytes and the cluster's cores
unless `spark.partitions` sets it: one per PART_BYTES, rounded up to a multiple of the cores (no
core idles in the last wave), at least one per core when each gets MIN_PART_BYTES (a small night
is not split into tasks that cost more to start than to run), never more than units.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from radgpt.config import Config
from radgpt.ingest.sources import reader

UNIT_BYTES = 4096  # nominal size of a unit whose size is unknown (balancing only)
PART_BYTES = 64 << 20  # input bytes per parse task on a big night
MIN_PART_BYTES = 1 << 20  # below this per core, fewer tasks than cores


def partitions(total: int, n_units: int, cores: int) -> int:
    """Parse (and write) tasks for `total` input bytes in `n_units` units on `cores` cores."""
    cores = max(1, cores)
    want = math.ceil(total / PART_BYTES)
    if want > cores:
        want = cores * math.ceil(want / cores)
    floor = min(cores, math.ceil(total / MIN_PART_BYTES))
    return max(1, min(n_units, max(want, floor)))


def write_units(
    cfg: Config, pairs: list[tuple[str, Path]], path: Path, parts: int | None, cores: int = 1
) -> list[tuple[int, int, int]]:
    """Stream the units of every input [(format, path)] into `path` (driver memory stays flat) in
    `parts` partitions (None: `partitions` of the total bytes on `cores`); returns the index:
    (offset, bytes, units) of each partition's lines. Two passes: the first learns the bytes."""
    listed = path.with_name(path.name + ".list")
    total = n = 0
    with open(listed, "w") as f:
        for k, (fmt, p) in enumerate(pairs):
            for unit in reader(fmt).units(p, cfg.ingest):
                size = unit.size or UNIT_BYTES
                f.write(f"{size}\t{k}\t{json.dumps(vars(unit))}\n")
                total += size
                n += 1
    parts = parts or partitions(total, n, cores)
    index = [[0, 0, 0] for _ in range(parts)]
    done = 0  # bytes of the units before this one
    with open(listed) as src, open(path, "wb") as f:
        for line in src:
            raw, js = line.split("\t", 1)  # js: "<input>\t<unit json>"
            size = int(raw)
            mid = done + size / 2  # the unit goes where its middle byte falls
            part = min(parts - 1, int(mid * parts / total))
            out = f"{part}\t{js}".encode()
            at = index[part]
            if not at[2]:
                at[0] = f.tell()
            at[1] += len(out)
            at[2] += 1
            f.write(out)
            done += size
    listed.unlink()
    return [tuple(i) for i in index]


def my_units(units_file: str, index: list, i: int):
    """(input, unit) pairs of partition i (the index of `write_units`), read from its own bytes;
    fails when they are not what the driver wrote (another file, or a partial one)."""
    from radgpt.ingest.sources.base import Unit

    offset, size, count = index[i]
    with open(units_file, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    mine = []  # checked before any is parsed
    for line in data.decode().splitlines():
        cols = line.split("\t", 2)
        if len(cols) != 3 or cols[0] != str(i):
            break
        mine.append((int(cols[1]), cols[2]))
    whole = len(data) == size and (not size or data.endswith(b"\n"))  # whole lines, all there
    if len(mine) != count or not whole:
        raise RuntimeError(
            f"{units_file}: partition {i} has {len(mine)} work units, the driver wrote {count}"
        )
    for inp, js in mine:
        yield inp, Unit(**json.loads(js))
