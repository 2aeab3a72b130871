"""One progress indicator per step: a tqdm bar on a terminal, else a periodic radgpt INFO line.

    with Progress(600, every_s=cfg.draft.progress_every_s) as p:
        for batch in batches:
            p.update(len(batch))
    # not a terminal (cron, k8s):  INFO radgpt.draft.progress: drafted 96/600 reports (0.7/s, eta 12m)

A log that is not a terminal gets a line at most every `every_s` seconds (0: every update) and
a last one with the total time; never a redrawn bar (carriage returns, ANSI codes).
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("radgpt.draft.progress")


def duration(s: float) -> str:
    """12s, 4m05s, 2h03m."""
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts done of `total`; a tqdm bar when `stream` (stderr) is a terminal, else INFO lines."""

    def __init__(self, total: int, *, what: str = "drafted", unit: str = "reports",
                 every_s: float = 30.0, stream=None):  # fmt: skip
        self.total, self.what, self.unit, self.every_s = total, what, unit, every_s
        self.done, self.t0 = 0, time.monotonic()
        self.last = self.t0
        stream = stream or sys.stderr
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit.rstrip("s"), file=stream)

    def line(self, final: bool = False) -> str:
        el = time.monotonic() - self.t0
        rate = self.done / el if el > 0 else 0.0
        if final:
            tail = f"in {duration(el)}"
        elif rate > 0:
            tail = f"eta {duration((self.total - self.done) / rate)}"
        else:
            tail = "eta ?"
        return f"{self.what} {self.done}/{self.total} {self.unit} ({rate:.2g}/s, {tail})"

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.done < self.total and now - self.last >= self.every_s:
            self.last = now
            log.info("%s", self.line())

    def close(self, failed: bool = False) -> None:
        """The bar closes; without one, the last line (not when the step failed)."""
        if self.bar is not None:
            self.bar.close()
        elif not failed:
            log.info("%s", self.line(final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(failed=kind is not None)
