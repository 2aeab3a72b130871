"""LoRA instruction tuning on Ray Train: `radgpt train` (see radgpt/train/run.py)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    return None
