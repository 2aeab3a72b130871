"""`radgpt sample`: synthetic chest X-ray reports in every input format the ingest reads (issue 2).

    radgpt sample --out var/sample --n 200 --seed 0     # default --out: config paths.sample
    radgpt sample --no-bad                              # leave out the malformed inputs

Writes under DIR (n well-formed reports per format, plus a few malformed inputs unless --no-bad):
    mimic/files/pNN/pNNNNNNNN/sNNNNNNNN.txt, mimic/mimic-cxr-2.0.0-split.csv.gz
    openi/NLMCXR_reports.tgz (ecgen-radiology/<n>.xml), csv/reports.csv (IU columns)
    fhir/diagnosticreports.ndjson, fhir/bundle.json, hl7/oru.hl7 (ORU^R01 v2.5)
    MANIFEST.json: counts, deliberately ineligible per cohort rule, bad inputs per kind, seed,
    generator version and the sha256 of every file.
Byte-identical for the same (n, seed, bad): seeded RNG per format, fixed tar/gzip mtimes.
The text comes from radgpt.sample.text (templates + seeded randomness), never from a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from radgpt.sample.csvx import write_csv
from radgpt.sample.fhir import write_fhir
from radgpt.sample.hl7 import write_hl7
from radgpt.sample.mimic import write_mimic
from radgpt.sample.openi import write_openi

GENERATOR = "radgpt.sample"
GENERATOR_VERSION = "sample-v1"  # bump when the output for a given seed changes

# one writer per format (radgpt/sample/<fmt>.py, like the readers in radgpt/ingest/sources/)
WRITERS = {
    "mimic": write_mimic,
    "openi": write_openi,
    "csv": write_csv,
    "fhir": write_fhir,
    "hl7": write_hl7,
}


def _is_sample(out: Path) -> bool:
    try:
        return json.loads((out / "MANIFEST.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError):
        return False


def _digest(root: Path) -> dict:
    """sha256 per file; the MIMIC tree (one file per report) as a count and one combined hash."""
    files, tree, h = {}, 0, hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel, sha = p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()
        if rel.startswith("mimic/files/"):
            tree += 1
            h.update(f"{rel}\0{sha}\n".encode())
        else:
            files[rel] = {"bytes": p.stat().st_size, "sha256": sha}
    files["mimic/files/"] = {"count": tree, "sha256": h.hexdigest()}
    return files


def write_sample(out: Path, n: int = 200, seed: int = 0, bad: bool = True) -> dict:
    """Write every format under `out` (replacing an earlier sample there); returns the manifest."""
    from radgpt.runtime import write_json_atomic

    out = Path(out)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if out.exists() and any(out.iterdir()) and not _is_sample(out):
        raise FileExistsError(
            f"{out} is not empty and holds no radgpt sample; refusing to overwrite"
        )
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        formats = {name: fn(tmp / name, n, seed, bad) for name, fn in WRITERS.items()}
        manifest = {
            "generator": GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "n": n,
            "bad_inputs": bad,
            "formats": formats,
            "totals": {
                "reports": sum(f["reports"] for f in formats.values()),
                "bad": sum(sum(f["bad"].values()) for f in formats.values()),
                "ineligible": sum(sum(f["ineligible"].values()) for f in formats.values()),
            },
            "files": _digest(tmp),
        }
        write_json_atomic(tmp / "MANIFEST.json", manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
