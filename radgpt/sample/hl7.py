"""HL7 v2.5 ORU^R01 in the sample: one radiology result message per report in hl7/oru.hl7.

    [msh(control_id, sent), pid(mrn, birth, sex), orc(placer, filler), obr(...), obx(...), ...]
    hl7_segments(case, r, k, when)  # PID, ORC, OBR and one OBX TX per report line, no MSH
    write_hl7(dir, n, seed, bad)    # segments end with \\r, messages are separated by \\n

The reader is radgpt.ingest.sources.hl7.
"""

from __future__ import annotations

import datetime as dt
import random
import textwrap
from collections.abc import Iterable
from pathlib import Path

from radgpt.sample.base import draw_time, report_text, rng, stats
from radgpt.sample.text import Case, draw_case, draw_cases

XR_CHEST = "36643-5^XR Chest 2V^LN"
STUDY_OBS = "18782-3^Radiology Study observation (narrative)^LN"
IMPRESSION_OBS = "19005-8^Radiology Impression (narrative)^LN"


def hl7_escape(s: str) -> str:
    """HL7 escapes for the field/component/repetition/escape/subcomponent separators."""
    s = s.replace("\\", "\\E\\")
    return s.replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\").replace("&", "\\T\\")


def msh(control_id: str, sent: str) -> str:
    """MSH of an ORU^R01 v2.5 result sent by the RIS at `sent` (YYYYMMDDHHMMSS)."""
    return f"MSH|^~\\&|RIS|GENHOSP|RADGPT|GENHOSP|{sent}||ORU^R01^ORU_R01|{control_id}|P|2.5"


def pid(mrn: str, birth: str, sex: str) -> str:
    """PID with PID-3 = the MRN (assigning authority GENHOSP), PID-7 birth date, PID-8 sex."""
    return f"PID|1||{mrn}^^^GENHOSP^MR||SYNTHETIC^PATIENT||{birth}|{sex}"


def orc(placer: str, filler: str) -> str:
    return f"ORC|RE|{placer}|{filler}"


def obr(placer: str, filler: str, observed: str, reported: str = "", exam: str = XR_CHEST) -> str:
    """OBR: OBR-3 filler (accession), OBR-4 exam, OBR-7 exam time, OBR-22 results time,
    OBR-25 result status F(inal)."""
    fields = ["OBR", "1", placer, filler, exam, "", "", observed] + [""] * 18
    fields[22], fields[25] = reported, "F"
    return "|".join(fields)


def obx(j: int, value: str, code: str = STUDY_OBS, value_type: str = "TX") -> str:
    """OBX number j; `value` is OBX-5 as written (already HL7-escaped)."""
    return f"OBX|{j}|{value_type}|{code}|1|{value}||||||F"


def hl7_segments(c: Case, r: random.Random, k: int, when: dt.datetime) -> list[str]:
    """PID, ORC, OBR and one OBX TX per report line (wrapped at 80 columns), no MSH."""
    obs, done = when.strftime("%Y%m%d%H%M"), (when + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M")
    mrn, placer, filler = (
        r.randint(1_000_000, 9_999_999),
        f"PL{k:06d}",
        f"ACC{r.randint(10**7, 10**8 - 1)}",
    )
    segs = [
        pid(str(mrn), f"{r.randint(1930, 1990)}0101", c.sex),
        orc(placer, filler),
        obr(placer, filler, obs, done),
    ]
    code = STUDY_OBS
    j = 0
    for line in report_text(c).split("\n"):
        if line == "IMPRESSION:":
            code = IMPRESSION_OBS
        for part in textwrap.wrap(line, 80):
            j += 1
            segs.append(obx(j, hl7_escape(part), code))
    return segs


def hl7_batch(msgs: Iterable[list[str]]) -> bytes:
    """Messages as one file: segments end with \\r, messages are separated by \\n."""
    return "\n".join("\r".join(m) + "\r" for m in msgs).encode() + b"\n"


def write_hl7(d: Path, n: int, seed: int, bad: bool) -> dict:
    r = rng(seed, "hl7")
    cases = draw_cases(r, n, mark=None)
    msgs = []
    for k, c in enumerate(cases):
        when = draw_time(r)  # exam time; the message is sent when the report is final (+1 h)
        ts = (when + dt.timedelta(hours=1, seconds=r.randint(0, 59))).strftime("%Y%m%d%H%M%S")
        msgs.append([msh(f"MSG{k:06d}", ts), *hl7_segments(c, r, k, when)])
        if bad and k == n // 2:  # bad: a message whose MSH segment is missing
            msgs.append(hl7_segments(draw_case(r, None), r, n + 1, draw_time(r)))
    d.mkdir(parents=True, exist_ok=True)
    (d / "oru.hl7").write_bytes(hl7_batch(msgs))
    return {**stats(cases), "messages": len(msgs), "bad": {"bad_hl7": int(bad)}}
