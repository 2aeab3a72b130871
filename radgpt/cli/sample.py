"""`radgpt sample`: the synthetic reports of radgpt.sample.write in every input format.

radgpt sample --out var/sample --n 200 --seed 0     # default --out: config paths.sample
radgpt sample --no-bad                              # leave out the malformed inputs
"""

from __future__ import annotations

import argparse
import logging
import time

from radgpt.cli import config, documented

log = logging.getLogger("radgpt.sample.write")


def add(sub: argparse._SubParsersAction) -> None:
    help = (
        "write synthetic chest X-ray reports in every input format (MIMIC, OpenI, CSV, FHIR, HL7)"
    )
    p = documented(sub, "sample", help, "radgpt.sample.write")
    p.add_argument("--out", default=None, help="output directory (default: config paths.sample)")
    p.add_argument("--n", type=int, default=200, help="well-formed reports per format")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bad",
        dest="bad",
        action="store_true",
        default=True,
        help="add malformed inputs (default)",
    )
    p.add_argument("--no-bad", dest="bad", action="store_false", help="no malformed inputs")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    from radgpt.sample.write import write_sample

    out = config(args, {"paths.sample": args.out}).path("sample")
    t0 = time.perf_counter()
    m = write_sample(out, n=args.n, seed=args.seed, bad=args.bad)
    log.info(
        "sample: %d reports, %d ineligible, %d bad inputs -> %s (%.2fs)",
        m["totals"]["reports"],
        m["totals"]["ineligible"],
        m["totals"]["bad"],
        out,
        time.perf_counter() - t0,
    )
    return 0
