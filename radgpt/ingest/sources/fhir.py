"""FHIR R4 DiagnosticReport: Bulk Data NDJSON (.ndjson[.gz], one resource a line) or JSON (.json:
a Bundle, or a single resource).

    from radgpt.ingest.sources import fhir
    units = list(fhir.units(Path("DiagnosticReport.ndjson"), cfg.ingest))  # driver: counts lines
    for r in fhir.read(units[0], cfg.ingest): ...                         # executor

Resources are validated with fhir.resources R4B models. Report text: presentedForm (base64
text/plain, else text/html stripped), else the narrative text.div (XHTML stripped) -> Raw.text;
`conclusion` -> Raw.conclusion (impression fallback in sections.pick). native_id = resource id, else
the first identifier "system|value", else "sha256:<16 hex>" of the resource. subject "Patient/x" ->
patient_id "x" (other references kept whole); imagingStudy[0] -> study_id; effectiveDateTime,
else effectivePeriod.start, else issued -> exam_time (UTC; naive = UTC; partial dates -> None);
code.text or coding[0].display -> exam; the first code.coding with a system -> exam_code
("system|code"); the first identifier of type ACSN (v2-0203), on the report or on a basedOn
reference, -> accession ("system|value"); identifiers -> meta["identifier"].
Every input record yields exactly one Raw or Bad so counts reconcile: resources that are not a
DiagnosticReport -> Bad("skipped_resource"); bad JSON -> "bad_json"; model errors -> "invalid_fhir";
no text and no conclusion -> "no_text". member = 0-based line (NDJSON) or entry index (Bundle;
"0" for a lone resource); sha256 = of the line's bytes / of the resource's canonical JSON.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import json
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from pydantic import ValidationError

from radgpt.config import IngestCfg
from radgpt.ingest.sources.base import Bad, Raw, Unit
from radgpt.runtime import sha256_bytes
from radgpt.schema import token

NAME = "fhir"
BLOCK = {
    "p",
    "div",
    "br",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "table",
    "ul",
    "ol",
}


def _is_ndjson(path: Path) -> bool:
    n = path.name.lower()
    return n.endswith(".ndjson") or n.endswith(".ndjson.gz")


def detect(path: Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    if _is_ndjson(path):
        return True
    if path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        return b'"resourceType"' in f.read(4096)


def _open(path: str | Path):
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    size = path.stat().st_size
    if not _is_ndjson(path):
        yield Unit(NAME, str(path), None, size=size)  # a Bundle/resource file is one unit
        return
    with _open(path) as f:
        n = sum(1 for _ in f)  # streamed line count; lines are not kept
    step = cfg.csv_rows_per_unit
    for a in range(0, n, step):
        yield Unit(NAME, str(path), None, start=a, stop=min(a + step, n), size=size)


class _Text(HTMLParser):
    """Visible text of HTML/XHTML; block elements become line breaks (headers stay on lines)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def strip_html(html: str) -> str:
    """'<p>FINDINGS: a</p><p>IMPRESSION: b</p>' -> 'FINDINGS: a\\n\\nIMPRESSION: b'."""
    p = _Text()
    p.feed(html)
    p.close()
    lines = [" ".join(ln.split()) for ln in "".join(p.out).split("\n")]
    return "\n".join(ln for ln in lines if ln).strip()


def _utc(v) -> dt.datetime | None:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
    return None  # partial dates ("2020-01") have no instant


def _attachment_text(att) -> str | None:
    """Decoded text of a text/plain or text/html attachment; UnicodeDecodeError propagates."""
    ctype = (att.contentType or "").lower()
    if att.data is None or not ctype.startswith(("text/plain", "text/html")):
        return None
    data = att.data
    if isinstance(data, str):  # some model versions keep base64 as str
        data = base64.b64decode(data, validate=True)
    charset = "utf-8"
    for part in ctype.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k == "charset" and v:
            charset = v.strip('"')
    text = data.decode(charset)
    return strip_html(text) if ctype.startswith("text/html") else text


def _accession(r) -> str | None:
    """The first identifier typed ACSN (v2-0203) of the report, else of a basedOn (logical)
    reference: "system|value"."""
    ids = [*(r.identifier or []), *(b.identifier for b in r.basedOn or [] if b.identifier)]
    for i in ids:
        codes = [c.code for c in (i.type.coding or [] if i.type is not None else [])]
        if "ACSN" in codes and i.value:
            return token(i.system, i.value)
    return None


def _errors(e: ValidationError) -> str:
    """Locations and error types only: pydantic's messages may echo input values (report text)."""
    errs = e.errors()
    parts = [f"{'.'.join(str(x) for x in err['loc'])}: {err['type']}" for err in errs[:5]]
    return f"{len(errs)} error(s): " + "; ".join(parts)


def resource_to_raw(member: str, obj, raw: bytes) -> Raw | Bad:
    """One parsed JSON value -> Raw, or Bad with a reason code."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    sha, size = sha256_bytes(raw), len(raw)
    if not isinstance(obj, dict) or "resourceType" not in obj:
        return Bad(member, "bad_json", "not a FHIR resource object", sha, size)
    if obj["resourceType"] != "DiagnosticReport":
        rt = str(obj["resourceType"])[:40]
        return Bad(member, "skipped_resource", f"resourceType={rt}", sha, size)
    try:
        r = DiagnosticReport.model_validate(obj)
    except ValidationError as e:
        return Bad(member, "invalid_fhir", _errors(e), sha, size)
    except (ValueError, TypeError, binascii.Error) as e:
        return Bad(member, "invalid_fhir", type(e).__name__, sha, size)
    text = None
    try:
        forms = [t for a in r.presentedForm or [] if (t := _attachment_text(a))]
    except (UnicodeDecodeError, LookupError) as e:
        return Bad(member, "bad_encoding", f"presentedForm: {type(e).__name__}", sha, size)
    except (binascii.Error, ValueError) as e:
        return Bad(member, "invalid_fhir", f"presentedForm: {type(e).__name__}", sha, size)
    plain = [
        t
        for a, t in zip(r.presentedForm or [], forms, strict=False)
        if "plain" in (a.contentType or "")
    ]
    text = (plain or forms or [None])[0]
    if not text and r.text is not None and r.text.div:
        text = strip_html(r.text.div) or None
    conclusion = (r.conclusion or "").strip() or None
    if not text and not conclusion:
        return Bad(member, "no_text", "no presentedForm text, narrative or conclusion", sha, size)
    idents = [f"{i.system or ''}|{i.value}" for i in r.identifier or [] if i.value]
    native = r.id or (idents[0] if idents else f"sha256:{sha[:16]}")
    ref = r.subject.reference if r.subject is not None else None
    patient = ref.removeprefix("Patient/") if ref else None
    study = r.imagingStudy[0].reference if r.imagingStudy else None
    when = r.effectiveDateTime
    if when is None and r.effectivePeriod is not None:
        when = r.effectivePeriod.start
    exam = code = None
    if r.code is not None:
        exam = r.code.text or next((c.display for c in r.code.coding or [] if c.display), None)
        code = next(
            (token(c.system, c.code) for c in r.code.coding or [] if c.system and c.code), None
        )
    return Raw(
        native_id=native,
        member=member,
        sha256=sha,
        text=text,
        conclusion=conclusion,
        patient_id=patient,
        study_id=study,
        exam_time=_utc(when) or _utc(r.issued),
        exam=exam,
        exam_code=code,
        accession=_accession(r),
        status=r.status,
        meta={"identifier": "; ".join(idents)} if idents else {},
    )


def _parse(member: str, raw: bytes, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    """A JSON document: a Bundle -> one record per entry, anything else -> one record."""
    if len(raw) > cfg.max_member_bytes:
        yield Bad(
            member,
            "too_large",
            f"{len(raw)} bytes > {cfg.max_member_bytes}",
            sha256_bytes(raw),
            len(raw),
        )
        return
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        yield Bad(
            member,
            "bad_json",
            f"{type(e).__name__} at pos {getattr(e, 'pos', getattr(e, 'start', '?'))}",
            sha256_bytes(raw),
            len(raw),
        )
        return
    if isinstance(obj, dict) and obj.get("resourceType") == "Bundle":
        for i, entry in enumerate(obj.get("entry") or []):
            res = entry.get("resource") if isinstance(entry, dict) else None
            canon = json.dumps(res, sort_keys=True, separators=(",", ":")).encode()
            yield resource_to_raw(f"{member}/{i}" if member else str(i), res, canon)
        return
    yield resource_to_raw(member or "0", obj, raw)


def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    try:
        if not _is_ndjson(Path(unit.uri)):
            size = Path(unit.uri).stat().st_size
            if size > cfg.max_member_bytes:
                yield Bad(None, "too_large", f"{size} bytes > {cfg.max_member_bytes}", size=size)
                return
            yield from _parse("", Path(unit.uri).read_bytes(), cfg)
            return
        stop = unit.stop if unit.stop >= 0 else sys.maxsize
        with _open(unit.uri) as f:
            for i, line in enumerate(f):
                if i < unit.start:
                    continue
                if i >= stop:
                    break
                line = line.rstrip(b"\r\n")
                if line.strip():  # blank lines are not resources
                    yield from _parse(str(i), line, cfg)
    except (OSError, EOFError) as e:
        yield Bad(None, "unreadable", f"{type(e).__name__}: {e}")
