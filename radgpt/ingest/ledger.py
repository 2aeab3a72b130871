"""The ingest's input ledger: which inputs a committed run read, in which state (issue 18).

Every ingest manifest (`<table>/_manifests/<run>.json`, written by the commit: radgpt.table) lists
its inputs with their state:

    {"format", "path", "sha256", "size", "mtime_ns", "reads", "committed_by", "done"[, "skipped"]}

`sha256` is the content of a file, or for a folder read as one input (a MIMIC-CXR tree, an OpenI
or HL7 folder) of its listing: each file's relative path, size and mtime_ns (`input_hash`).
`reads` hashes the settings that change what an input gives (`ingest.csv`, `max_member_bytes`,
`ignore`). `committed_by` is the run that read the input in that state: the run itself, or, for
an input it skipped (`skipped: "unchanged"`), the earlier run. `done` is false when the run may
not have taken all of it: a unit cut short (`unread`: a truncated gzip, a file still being written,
a read error) or a report id repeated within the run (`duplicate_ids`: the later record may be a
newer version, which a re-read turns into a correction).

With `ingest.skip_unchanged` (default true) a night skips an input whose (path, format, sha256,
reads) a committed manifest lists as done: it is not listed into units, parsed or counted again;
`counts.by_file` names it as skipped with the run that committed it. Any other input is read in
full: a new file gives new reports, a changed one goes through the report-versioning rules
(radgpt.ingest.cohort: already ingested, or corrected). Since the ledger is in the manifest, a run
that crashes before its commit marks nothing done.

Unchanged means the same content hash, not the same (size, mtime_ns): hashing reads the file
(sequentially, ~1 GB/s, in driver threads) but does not parse it, and a copy that keeps the size
and mtime of a corrected export (`rsync -t`, `cp -p` of an edit of the same length) still counts as
changed. Folders are fingerprinted by listing (size, mtime_ns of each file), not content: hashing
227k MIMIC-CXR report files would cost an open per file every night.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from radgpt import table
from radgpt.config import IngestCfg
from radgpt.runtime import sha256_file

HASH_THREADS = 4  # hashlib releases the GIL: inputs are hashed in parallel


def input_hash(p: Path) -> str:
    """sha256 of a file; for a directory, of its sorted listing (relative path, size, mtime_ns)."""
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()

    def stat(e: os.DirEntry) -> os.stat_result | None:  # None: a folder
        try:
            return None if e.is_dir() else e.stat()
        except OSError:  # a link loop or a dangling link (quarantined): the link itself
            return e.stat(follow_symlinks=False)

    def walk(d: str, rel: str) -> None:  # os.walk's order: a folder's files, then its subfolders
        with os.scandir(d) as it:
            entries = [(e, stat(e)) for e in sorted(it, key=lambda e: e.name)]
        for e, st in entries:
            if st is not None:
                h.update(f"{rel}{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        for e, st in entries:
            if st is None and not e.is_symlink():  # like os.walk: symlinked folders not entered
                walk(e.path, f"{rel}{e.name}/")

    walk(str(p), "")
    return h.hexdigest()


def reads_hash(cfg: IngestCfg) -> str:
    """The settings that change what an input gives (a CSV mapping, the record cap, the names
    skipped in a folder): a ledger entry holds only under the same ones."""
    keys = {"csv": cfg.csv.model_dump(mode="json"), "max_member_bytes": cfg.max_member_bytes,
            "ignore": sorted(cfg.ignore)}  # fmt: skip
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def state(fmt: str, p: Path, reads: str) -> dict:
    """An input's ledger state; stat before the hash, so that a file written meanwhile has a
    stale stat and a hash of what was there first, never a hash of content not read."""
    st = p.stat() if p.is_file() else None
    return {"format": fmt, "path": str(p), "sha256": input_hash(p),
            "size": st and st.st_size, "mtime_ns": st and st.st_mtime_ns,
            "reads": reads}  # fmt: skip


def states(pairs: list[tuple[str, Path]], cfg: IngestCfg) -> list[dict]:
    """The ledger state of every input [(format, path)], hashed in HASH_THREADS threads."""
    reads = reads_hash(cfg)
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="input-hash") as pool:
        return list(pool.map(lambda fp: state(*fp, reads), pairs))


def _key(s: dict) -> tuple:
    return s["path"], s["format"], s["sha256"], s["reads"]


def committed(root: str | os.PathLike) -> dict[tuple, str]:
    """(path, format, sha256, reads) -> the run that committed it, for every input state a
    committed ingest manifest of the table at root lists as done (the first such run)."""
    done: dict[tuple, str] = {}
    for m in table.manifests(root):
        for s in m.get("inputs", []):
            if s.get("done") and s.get("reads"):  # manifests before the ledger: read again
                done.setdefault(_key(s), s["committed_by"])
    return done


def split(states: list[dict], done: dict[tuple, str]) -> tuple[list[int], list[dict]]:
    """(indexes of the inputs to read, skipped states naming the run that committed them)."""
    todo, skipped = [], []
    for i, s in enumerate(states):
        run = done.get(_key(s))
        if run is None:
            todo.append(i)
        else:
            skipped.append({**s, "committed_by": run, "done": True, "skipped": "unchanged"})
    return todo, skipped


def entries(read: list[dict], by_file: dict, run_id: str, skipped: list[dict]) -> list[dict]:
    """The manifest's `inputs`: the states read by run_id (done unless cut short or with a
    repeated report id, by the run's counts.by_file) and the states skipped."""
    out = []
    for s in read:
        c = by_file.get(s["path"], {})
        done = not c.get("unread") and not c.get("duplicate_ids")
        out.append({**s, "committed_by": run_id, "done": done})
    return [*out, *skipped]
