"""Byte-level work on the header block: split it, drop fields, prepend and append fields.

The body and every header we do not touch stay byte for byte as the client sent them (only line
ends are normalised), which re-serialising through the ``email`` package would not promise.
Field boundaries follow the ``email`` parser's own rule (``email.feedparser.headerRE``), so this
module and the parsed message agree on where the header block ends.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")

#: Removed before hashing for idempotency (SPEC §6): a client may regenerate them on retry.
FINGERPRINT_SKIP = frozenset({"date", "message-id", "received", "x-helo-idempotency-key"})


def normalise_line_ends(data: bytes) -> bytes:
    """Bare CR or LF become CRLF (SPEC §5); CRLF stays as it is. Three counts tell whether
    there is anything to do (the usual case: nothing); then three replaces, no Python loop."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Field:
    """One header field as raw lines (CRLF included) and its lower-cased name."""

    name: str
    raw: bytes


def split(data: bytes) -> tuple[list[Field], bytes]:
    """(header fields, rest) where ``rest`` starts with the blank line (or the first body
    line when the separator is missing). ``data`` must have CRLF line ends."""
    fields: list[Field] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        end = len(data) if end < 0 else end + 2
        line = data[pos:end]
        if line in (b"\r\n", b"") or not _HEADER_LINE.match(line):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = Field(fields[-1].name, fields[-1].raw + line)
        elif line[:1] not in (b" ", b"\t"):
            fields.append(Field(_name(line), line))
        else:
            break  # a continuation line with nothing to continue: body starts
        pos = end
    return fields, data[pos:]


def _name(line: bytes) -> str:
    if line.startswith(b"From "):
        return "from "  # mbox separator, never a real field
    return line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def join(fields: Iterable[Field], rest: bytes) -> bytes:
    head = b"".join(f.raw for f in fields)
    if not rest.startswith(b"\r\n"):
        rest = b"\r\n" + rest  # always a blank line between header and body
    return head + rest


def without(fields: Iterable[Field], drop: Callable[[str], bool]) -> list[Field]:
    return [f for f in fields if not drop(f.name)]


def make_field(name: str, value: str) -> Field:
    """A new field; ``value`` must be ASCII and may hold CRLF + tab folds."""
    return Field(name.lower(), f"{name}: {value}\r\n".encode("ascii"))


def fingerprint(sender: str, recipients: Iterable[str], data: bytes) -> str:
    """SHA-256 over envelope sender, sorted recipients and the message without the fields a
    retry may regenerate (SPEC §6). ``data`` is the message as received, CRLF-normalised."""
    fields, rest = split(data)
    kept = join(without(fields, lambda n: n in FINGERPRINT_SKIP), rest)
    h = hashlib.sha256()
    h.update(sender.encode("utf-8", "surrogateescape") + b"\0")
    for r in sorted(recipients):
        h.update(r.encode("utf-8", "surrogateescape") + b"\0")
    h.update(b"\0" + kept)
    return h.hexdigest()
