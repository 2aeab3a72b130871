"""Capped, streamed reading of files that hold many records (NDJSON lines, CSV rows, HL7 segments,
FHIR Bundle entries), shared by the readers' units() (driver: counting) and read() (executor).

    with open_bytes(path) as f:                      # gzip by the .gz suffix, decompression streamed
        for tok in tokens(f, cap):                   # one Token per line (seps=b"\\n")
            tok.error or tok.data or "over the cap"  # the record's bytes, None when over `cap`

The cap (ingest.max_member_bytes) applies to one record: a record over it is read in chunks and
discarded up to the next separator, never held whole (its size is still counted), so memory stays
bounded by the cap whatever the file's or the decompressed stream's size. A stream that fails (a
gzip file that ends early, a corrupt one) ends with a Token whose `error` is (reason, detail):
that token is one record (the rest of the file) on both sides, so counts agree.
`json_members` streams the members of a top-level JSON object the same way (a Bundle's entries).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 16
HEAD = 64  # bytes of a token kept even when it is over the cap (e.g. "MSH|" detection)
STREAM_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def open_bytes(path) -> BinaryIO:
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def stream_error(e: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failed read: a compressed stream that ends early is `truncated`."""
    detail = f"{type(e).__name__}: {e}"[:300]
    return ("truncated" if isinstance(e, EOFError) else "unreadable"), detail


@dataclass(slots=True)
class Token:
    data: bytes | None  # the bytes between two separators; None when over the cap
    term: bytes  # the separator that ended it; b"" at the end of the stream
    size: int  # bytes, separator excluded
    start: int  # offset of its first byte in the (decompressed) stream, `drop` bytes counted
    head: bytes  # its first HEAD bytes, also when over the cap
    quotes: int = 0  # b'"' bytes in a token over the cap (the CSV splitter uses their parity)
    error: tuple[str, str] | None = None  # (reason, detail): the stream failed in this token


def tokens(
    f: BinaryIO, cap: int, seps: bytes = b"\n", drop: bytes = b"", start: int = 0
) -> Iterator[Token]:
    """Tokens of f separated by any byte of `seps` (bytes of `drop` removed from the tokens' data
    and sizes, and counted in their offsets: Token.start is where f.seek finds the token again).
    A final token without separator is yielded when non-empty; a read error ends the stream with
    an error token. `start`: f's position (offsets of the tokens count from it)."""
    split = re.compile(b"([" + re.escape(seps) + b"])")
    # read1: a gzip stream that ends early still gives every byte before the end (read(n) of its
    # buffered reader drops the bytes it had when the next raw read fails)
    read = getattr(f, "read1", f.read)
    buf, size, quotes, head, over = bytearray(), 0, 0, b"", False
    raw = 0  # bytes of the current token as read (`drop` bytes included)
    offset = first = start

    def add(piece: bytes) -> None:
        nonlocal size, quotes, head, over
        size += len(piece)
        if over:
            quotes += piece.count(b'"')
            return
        buf.extend(piece)
        if len(buf) > cap:
            over, head, quotes = True, bytes(buf[:HEAD]), buf.count(b'"')
            buf.clear()

    def token(term: bytes, error=None) -> Token:
        data = None if over or error else bytes(buf)
        return Token(data, term, size, first, head if over else bytes(buf[:HEAD]), quotes, error)

    while True:
        try:
            block = read(CHUNK)
        except STREAM_ERRORS as e:
            yield token(b"", stream_error(e))
            return
        if not block:
            break
        parts = split.split(block)  # drop and seps share no byte: split first, then drop
        for k in range(0, len(parts) - 1, 2):
            raw += len(parts[k])
            add(parts[k].translate(None, drop) if drop else parts[k])
            yield token(parts[k + 1])
            offset += raw + 1
            buf.clear()
            size, raw, quotes, head, over, first = 0, 0, 0, b"", False, offset
        raw += len(parts[-1])
        add(parts[-1].translate(None, drop) if drop else parts[-1])
    if size:
        yield token(b"")


# ---- streamed JSON: the members of a top-level object --------------------------------------------

_STRUCT = re.compile(rb'[\[\]{},:"]')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.S)  # a whole string, when it ends in this block
_STR_END = re.compile(rb'["\\]')


class _Capture:
    """Bytes of one value being streamed, kept up to the cap (then only counted)."""

    def __init__(self, cap: int, at: int) -> None:
        self.cap, self.at, self.buf, self.size, self.over = cap, at, bytearray(), 0, False

    def take(self, block: bytes, end: int) -> None:
        piece = block[self.at : end]
        self.size += len(piece)
        if not self.over:
            self.buf.extend(piece)
            if len(self.buf) > self.cap:
                self.over = True
                self.buf.clear()
        self.at = 0

    def done(self, block: bytes, end: int) -> tuple[bytes | None, int]:
        self.take(block, end)
        return (None, self.size) if self.over else (bytes(self.buf).strip(), self.size)


def json_members(f: BinaryIO, cap: int, items: str = "entry") -> Iterator[tuple]:
    """Stream a JSON document whose top level is an object: ("key", name, value bytes | None, size)
    per member, except that the members of the array named `items` come one by one as
    ("item", index, bytes | None, size). None = over the cap. ValueError when the document is not
    such an object or ends early; values are not validated (json.loads each)."""
    depth, in_str, esc, key_next = 0, False, False, False
    key, value, item, n_items, key_cap = None, None, None, 0, None
    after_colon = False  # the first structural byte of a member's value is next
    while True:
        block = f.read(CHUNK)
        if not block:
            break
        p = 0
        while p < len(block):
            if in_str:
                if esc:
                    p, esc = p + 1, False
                    continue
                m = _STR_END.search(block, p)
                if m is None:
                    p = len(block)
                elif m.group() == b"\\":
                    p, esc = m.end() + 1, m.end() >= len(block)
                else:
                    p, in_str = m.end(), False
                    if key_cap is not None:
                        key = _key(*key_cap.done(block, p))
                        key_cap = None
                continue
            m = _STRUCT.search(block, p)
            if m is None:
                break
            c, p = m.group(), m.end()
            first, after_colon = after_colon, False
            if c == b'"':
                if depth == 1 and key_next:
                    key_cap, key_next = _Capture(256, p - 1), False
                s = _STRING.match(block, p - 1)
                if s is None:
                    in_str = True
                    continue
                p = s.end()
                if key_cap is not None:
                    key = _key(*key_cap.done(block, p))
                    key_cap = None
            elif c == b":" and depth == 1:
                value, after_colon = _Capture(cap, p), True
            elif c in b"[{":
                if depth == 0 and c != b"{":
                    raise ValueError("the JSON document is not an object")
                if depth == 1 and first and c == b"[" and key == items:
                    value, item = None, _Capture(cap, p)
                depth += 1
                key_next = key_next or depth == 1
            elif c == b"," and depth == 2 and item is not None:
                yield ("item", n_items, *item.done(block, p - 1))
                n_items, item = n_items + 1, _Capture(cap, p)
            elif c == b"," and depth == 1:
                if value is not None:
                    yield ("key", key, *value.done(block, p - 1))
                value, key_next = None, True
            elif c in b"]}":
                if depth == 2 and item is not None:
                    data, size = item.done(block, p - 1)
                    if data is None or data:  # "[]" has no item
                        yield ("item", n_items, data, size)
                    item = None
                elif depth == 1:
                    if value is not None:
                        yield ("key", key, *value.done(block, p - 1))
                    return
                depth -= 1
        for cap_ in (key_cap, value, item):
            if cap_ is not None:
                cap_.take(block, len(block))
    raise ValueError("the JSON document ends early")


def _key(data: bytes | None, size: int) -> str | None:
    import json

    return json.loads(data) if data is not None else None
