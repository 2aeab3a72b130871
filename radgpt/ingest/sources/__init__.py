"""Source readers: one module per input format, all with the interface in `base`."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

FORMATS = ("mimic", "openi", "csv", "fhir", "hl7")


def reader(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    # the csv reader lives in csvx.py so that it does not shadow the stdlib csv module
    return importlib.import_module(f"radgpt.ingest.sources.{'csvx' if fmt == 'csv' else fmt}")


def detect(path: str | Path) -> str:
    """Format of an input path, or ValueError naming the path."""
    p = Path(path)
    for fmt in FORMATS:
        if reader(fmt).detect(p):
            return fmt
    raise ValueError(f"cannot detect the format of {p}; pass --format")
