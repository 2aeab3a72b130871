"""The ingest's counts, per input file and in total, and the checks that they add up (issue 14).

Every record of every input is accounted for exactly once, per input (`counts.by_file` of the run
manifest, keyed by the input's path):

    seen = new + corrected + already_ingested + quarantined (+ unread)

`new` reports were added to the table (`excluded` of them fail a rule: eligible = false);
`corrected` were added as new versions of reports ingested before (changed content);
`already_ingested` were in the table before; `quarantined` are quarantine rows (`duplicate_ids` of
them repeat a report id of this run); `unread` (shown when not 0) are the records of a unit whose
reader stopped early (raised, or ended with an `unreadable`/`truncated` row that stands for them).
An input skipped as committed unchanged (radgpt.ingest.ledger) is read for none of them: its entry
is all 0 with `skipped: "unchanged"` and the run that committed it (`committed_by`).

An input is what the driver resolved (radgpt.ingest.run.resolve_inputs): a file (CSV, NDJSON,
Bundle, HL7 file, OpenI xml, an archive: a MIMIC-CXR zip, an OpenI tgz) or a folder read as one
input (a MIMIC-CXR tree, an OpenI or HL7 folder: the quarantine rows name the file inside it).
A file that is no input (unknown format, a link out of the root, a FIFO) is one record, quarantined.
So the manifest holds one entry per input, whatever the number of reports (one for a 227k-report
MIMIC-CXR tree).

`seen` is counted apart from the rows (radgpt.ingest.executor, `Tally`): a unit whose reader
counts its records on the driver (`UNIT_RECORDS` of the reader: CSV row ranges, MIMIC-CXR zip and
OpenI tgz member ranges, an OpenI xml file; a fault unit is one record) has seen = that count,
whatever read() gives; other units (a MIMIC-CXR patient folder, an NDJSON line range whose lines
may be blank or Bundles, a Bundle file, an HL7 file) count the items their reader gives. The rows
are counted after the cohort rules, by the write tasks. `reconcile` fails the run, naming the
input, when they differ: before anything is committed.
"""

from __future__ import annotations

from radgpt.ingest.sources import reader
from radgpt.ingest.sources.base import Unit

# per input; the first is the sum of the others (unread: shown when not 0)
FIELDS = ("seen", "new", "corrected", "excluded", "already_ingested", "duplicate_ids",
          "quarantined", "unread")  # fmt: skip
STATES = {"new": "new", "corrected": "corrected", "seen": "already_ingested",
          "dup_id": "duplicate_ids"}  # cohort _state -> count  # fmt: skip
WRITTEN = ("new", "corrected")  # the states whose rows are written (radgpt.ingest.executor.WRITE)


def expected(unit: Unit) -> int | None:
    """Records in the unit as counted by the driver (units()), or None when only read() knows."""
    if unit.fault is not None:
        return 1
    if unit.stop >= 0 and getattr(reader(unit.format), "UNIT_RECORDS", False):
        return unit.stop - unit.start
    return None


class Tally:
    """Records seen per input by one parse task (radgpt.ingest.rows.parse_units' `tally`)."""

    def __init__(self) -> None:
        self.by_input: dict[int, list] = {}  # input -> [source, seen, unread]

    def add(self, inp: int, unit: Unit, items: int, ended: bool) -> None:
        want = expected(unit)
        if want is None:
            seen = items
        else:  # a unit that ended early has the records it did not give as `unread`
            seen = max(want, items) if ended else want
        t = self.by_input.setdefault(inp, [unit.format, 0, 0])
        t[1] += seen
        t[2] += seen - items if ended else 0

    def rows(self) -> list[dict]:
        return [
            {"source": s, "_input": i, "seen": n, "unread": u}
            for i, (s, n, u) in sorted(self.by_input.items())
        ]


def count(written: list, parsed: list, unknown_rows: list[dict], inputs: list) -> dict:
    """The run's counts from the write tasks' rows (what = count: per (state, source, split,
    origin, rule outcome); what = input: per (input, state, eligible); radgpt.ingest.executor), the
    parse's rows per (kind, source, reason, input) with their count and the records seen, the files
    that are no input (`unknown_rows`) and the inputs [(format, path)]."""
    state = dict.fromkeys(STATES, 0)
    by_reason, by_split, moved, amended = {}, {}, 0, {}
    per = [dict.fromkeys(FIELDS, 0) for _ in inputs]
    q = {}  # quarantined items per (source, reason)

    def add(d: dict, k, n: int) -> None:
        d[k] = d.get(k, 0) + n

    for r in parsed:
        if r["kind"] == "seen":
            per[r["_input"]]["seen"] += r["seen"]
            per[r["_input"]]["unread"] += r["unread"]
        elif r["kind"] == "bad":
            per[r["_input"]]["quarantined"] += r["count"]
            add(q, (r["source"], r["reason"]), r["count"])
    for r in written:
        n = r["rows"]
        if r["what"] == "input":
            c = per[r["_input"]]
            c[STATES[r["_state"]]] += n
            c["excluded"] += n if r["_state"] in WRITTEN and not r["eligible"] else 0
            c["quarantined"] += n if r["_state"] == "dup_id" else 0
            continue
        state[r["_state"]] += n
        if r["_amended"]:  # the source status says corrected/amended: by what the rules saw
            add(amended, STATES[r["_state"]], n)
        if r["_state"] == "dup_id":  # a second row with a report_id seen in this run
            add(q, (r["source"], "duplicate_report_id"), n)
        if r["_state"] not in WRITTEN:
            continue
        key = "eligible" if r["eligible"] else r["exclusion_reason"]
        add(by_reason, key, n)
        if r["eligible"]:
            add(by_split, r["split"], n)
        moved += n if r["split_origin"] == "duplicate" and r["_state"] == "new" else 0
    for u in unknown_rows:
        add(q, (u["source"], u["reason"]), 1)
    quarantined = {}
    for (source, reason), n in sorted(q.items()):
        quarantined.setdefault(source, {})[reason] = n
    by_file, by_source = _per_file(per, inputs, unknown_rows)
    return {
        "new_by_rule": dict(sorted(by_reason.items())),
        "eligible_by_split": dict(sorted(by_split.items())),
        "by_source": by_source,
        "by_file": by_file,
        "quarantined": quarantined,
        "duplicate_pairs_moved": moved,
        # rows whose source status announces a correction (FHIR amended|corrected|appended, HL7
        # C), by what they became: corrected (changed content), already_ingested (same content),
        # new (no earlier version in the table), duplicate_ids
        "status_corrected": dict(sorted(amended.items())),
        "totals": {
            "seen": sum(c["seen"] for c in by_file.values()),
            "new": state["new"],
            "corrected": state["corrected"],
            "eligible": by_reason.get("eligible", 0),
            "excluded": state["new"] + state["corrected"] - by_reason.get("eligible", 0),
            "already_ingested": state["seen"],
            "duplicate_ids": state["dup_id"],
            "quarantined": sum(q.values()),
            "unread": sum(c.get("unread", 0) for c in by_file.values()),
        },
    }


def _per_file(per: list[dict], inputs: list, unknown_rows: list[dict]) -> tuple[dict, dict]:
    """({path: counts} (an input given twice: summed), {source: counts + eligible})."""
    by_file, by_source = {}, {}
    odd = [(u["source"], u["source_uri"], {"seen": 1, "quarantined": 1}) for u in unknown_rows]
    for fmt, path, c in [*((f, str(p), c) for (f, p), c in zip(inputs, per, strict=True)), *odd]:
        for d in (by_file.setdefault(path, {}), by_source.setdefault(fmt, {})):
            for k in FIELDS:
                if c.get(k) or k != "unread":
                    d[k] = d.get(k, 0) + c.get(k, 0)
    for s in by_source.values():
        s["eligible"] = s["new"] + s["corrected"] - s["excluded"]
    return dict(sorted(by_file.items())), dict(sorted(by_source.items()))


def add_skipped(counts: dict, skipped: list[dict]) -> dict:
    """Inputs skipped as committed unchanged (radgpt.ingest.ledger) in the run's counts: in
    by_file with no record read this run (seen = 0 = the rest) and the run that committed them,
    per source and in total as `skipped_inputs`."""
    zero = {k: 0 for k in FIELDS if k != "unread"}
    for s in skipped:
        counts["by_file"][s["path"]] = {**zero, "skipped": "unchanged",
                                        "committed_by": s["committed_by"]}  # fmt: skip
        src = counts["by_source"].setdefault(s["format"], {**zero, "eligible": 0})
        src["skipped_inputs"] = src.get("skipped_inputs", 0) + 1
    counts["by_file"] = dict(sorted(counts["by_file"].items()))
    counts["by_source"] = dict(sorted(counts["by_source"].items()))
    counts["totals"]["skipped_inputs"] = len(skipped)
    return counts


def balance(c: dict) -> int:
    """seen - (new + corrected + already_ingested + quarantined + unread): 0 when they add up."""
    return (
        c["seen"] - c["new"] - c.get("corrected", 0) - c["already_ingested"] - c["quarantined"]
        - c.get("unread", 0)
    )  # fmt: skip


def reconcile(n_parsed: int, counts: dict) -> None:
    """Fail loudly unless every parsed report and every record seen of every input is accounted
    for exactly once (before the commit: a run that fails here commits nothing)."""
    t = counts["totals"]
    if n_parsed != t["new"] + t["corrected"] + t["already_ingested"] + t["duplicate_ids"]:
        raise RuntimeError(f"counts do not reconcile: parsed {n_parsed} reports but {t}")
    off = [(path, c) for path, c in counts["by_file"].items() if balance(c)]
    if off or balance(t):
        named = "; ".join(f"{path}: {_terms(c)}" for path, c in off[:5])
        more = f" (and {len(off) - 5} more inputs)" if len(off) > 5 else ""
        raise RuntimeError(
            f"counts do not reconcile for {len(off)} input(s): records lost or counted twice: "
            f"{named or _terms(t)}{more}"
        )


def _terms(c: dict) -> str:
    unread = f" + {c['unread']} unread" if c.get("unread") else ""
    return (
        f"{c['seen']} records seen != {c['new']} new + {c.get('corrected', 0)} corrected + "
        f"{c['already_ingested']} already ingested "
        f"+ {c['quarantined']} quarantined{unread}"
    )
