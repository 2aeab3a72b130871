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
DiagnosticReport -> Bad("skipped_resource"); bad JSON -> "bad_json" (not UTF-8: "bad_encoding");
model errors -> "invalid_fhir";
no text and no conclusion -> "no_text". member = 0-based line (NDJSON) or entry index (Bundle;
"0" for a lone resource); sha256 = of the line's bytes / of the resource's canonical JSON.
Each line or entry is its own record: a line that does not parse (bad JSON, nesting too deep for
the parser -> RecursionError, not UTF-8) or makes the model raise quarantines only itself. The cap
(cfg.max_member_bytes) applies to a record: lines are streamed (radgpt.ingest.sources.stream; a
line over the cap is `too_large` without being held), a Bundle file over the cap is streamed entry
by entry, and only a lone resource over the cap is `too_large` whole. A .ndjson.gz that ends early
gives its lines, then one `truncated` row; an empty file is one `empty_file` row.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from pydantic import ValidationError

from radgpt.config import IngestCfg
from radgpt.ingest.sources.base import (
    Bad,
    Raw,
    Unit,
    fault,
    guarded,
    reads_faults,
    row_share,
    safe_units,
)
from radgpt.ingest.sources.stream import (
    STREAM_ERRORS,
    json_members,
    open_bytes,
    stream_error,
    tokens,
)
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


@safe_units(NAME)
def units(path: Path, cfg: IngestCfg) -> Iterator[Unit]:
    path = Path(path).resolve()
    size = path.stat().st_size
    if not _is_ndjson(path):
        yield Unit(NAME, str(path), None, size=size)  # a Bundle/resource file is one unit
        return
    step, starts, n = cfg.csv_rows_per_unit, [], 0
    with open_bytes(path) as f:  # streamed line count; lines are not kept
        for n, tok in enumerate(tokens(f, cfg.max_member_bytes), 1):
            if n % step == 1 or step == 1:
                starts.append(tok.start)  # Unit.extra: where read() starts
    if n == 0:
        yield fault(NAME, str(path), None, "empty_file", "no lines", size=size)
    for k, a in enumerate(range(0, n, step)):
        b = min(a + step, n)
        yield Unit(NAME, str(path), None, a, b, row_share(size, b - a, n), extra=str(starts[k]))


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


def _too_large(member: str | None, size: int, cfg: IngestCfg, sha: str | None = None) -> Bad:
    return Bad(member, "too_large", f"{size} bytes > {cfg.max_member_bytes}", sha, size)


def _json(member: str, raw: bytes) -> tuple[object, Bad | None]:
    """json.loads, or a Bad: bad_encoding (not UTF-8), else bad_json (RecursionError: nesting
    deeper than the parser goes; ValueError: an int past Python's digit limit)."""
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        where = getattr(e, "pos", getattr(e, "start", None))
        detail = type(e).__name__ + (f" at pos {where}" if where is not None else "")
        reason = "bad_encoding" if isinstance(e, UnicodeDecodeError) else "bad_json"
        return None, Bad(member, reason, detail, sha256_bytes(raw), len(raw))


def _entry(member: str, entry) -> Raw | Bad:
    """One Bundle entry (parsed) -> Raw or Bad; sha256 of the resource's canonical JSON."""
    res = entry.get("resource") if isinstance(entry, dict) else None
    canon = json.dumps(res, sort_keys=True, separators=(",", ":")).encode()
    return guarded(member, canon, "invalid_fhir", lambda: resource_to_raw(member, res, canon))


def _parse(member: str, raw: bytes, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    """A JSON document: a Bundle -> one record per entry, anything else -> one record."""
    if len(raw) > cfg.max_member_bytes:
        yield _too_large(member, len(raw), cfg, sha256_bytes(raw))
        return
    obj, bad = _json(member, raw)
    if bad is not None:
        yield bad
        return
    if isinstance(obj, dict) and obj.get("resourceType") == "Bundle":
        entries = obj.get("entry") or []
        if not isinstance(entries, list):
            yield Bad(member or None, "invalid_fhir", "Bundle.entry is not an array",
                      sha256_bytes(raw), len(raw))  # fmt: skip
            return
        for i, entry in enumerate(entries):
            yield _entry(f"{member}/{i}" if member else str(i), entry)
        return
    yield guarded(
        member or "0", raw, "invalid_fhir", lambda: resource_to_raw(member or "0", obj, raw)
    )


def _stream_bundle(path: str, size: int, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    """A JSON file over the cap: a Bundle's entries one by one (each capped), else too_large;
    a Bundle that stops being well-formed JSON: one bad_json row for the rest of it."""
    try:
        with open(path, "rb") as f:  # pass 1: the top-level resourceType (usually the first key)
            top = json_members(f, 64)
            rtype = next((v for k, name, v, _ in top if (k, name) == ("key", "resourceType")), None)
        if rtype != b'"Bundle"':
            yield _too_large(None, size, cfg)  # one resource over the cap
            return
        with open(path, "rb") as f:  # pass 2: the entries
            for kind, name, data, n in json_members(f, cfg.max_member_bytes):
                if kind == "key" and name == "entry":
                    yield Bad(None, "invalid_fhir", "Bundle.entry is not an array", size=n)
                elif kind == "item" and data is None:
                    yield _too_large(str(name), n, cfg)
                elif kind == "item":
                    entry, bad = _json(str(name), data)
                    yield bad or _entry(str(name), entry)
    except ValueError as e:  # json_members' own messages: no data in them
        yield Bad(None, "bad_json", f"Bundle streamed from disk: {e}")


def _ndjson(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    stop = unit.stop if unit.stop >= 0 else sys.maxsize
    offset = int(unit.extra) if unit.extra is not None else 0
    with open_bytes(unit.uri) as f:
        f.seek(offset)  # the first line of the range (units() found it)
        first = unit.start if unit.extra is not None else 0
        for i, tok in enumerate(tokens(f, cfg.max_member_bytes, start=offset), first):
            if i >= stop:
                break
            if i < unit.start:
                continue
            if tok.error:
                yield Bad(str(i), *tok.error, size=tok.size or None)
            elif tok.data is None:
                yield _too_large(str(i), tok.size, cfg)
            elif (line := tok.data.rstrip(b"\r")).strip():  # blank lines are not resources
                yield from _parse(str(i), line, cfg)


@reads_faults
def read(unit: Unit, cfg: IngestCfg) -> Iterator[Raw | Bad]:
    try:
        if _is_ndjson(Path(unit.uri)):
            yield from _ndjson(unit, cfg)
            return
        size = Path(unit.uri).stat().st_size
        if size <= cfg.max_member_bytes:
            yield from _parse("", Path(unit.uri).read_bytes(), cfg)
        else:
            yield from _stream_bundle(unit.uri, size, cfg)
    except STREAM_ERRORS as e:  # opening or reading the file (lines report their own errors)
        yield Bad(None, *stream_error(e))
