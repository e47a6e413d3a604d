"""Rewrite the text parts of a message in place, as bytes (SPEC §14 "Rewriting").

``edit_text_parts(head, body, edit)`` walks the MIME tree on the raw bytes (RFC 2046 §5.1.1
delimiters), and for each inline ``text/plain`` / ``text/html`` leaf calls
``edit(subtype, text)`` with the decoded text. Only a part whose text changed is re-encoded,
with its own charset and transfer encoding where they can carry the new text; a header of that
part is rewritten in place only when its charset or encoding must change. Every other byte
(the message's header fields, other parts, preamble, epilogue, delimiters) is kept, so no
header can be refolded, split or made by the relay: the ``email`` package is used to read a
part's content type and payload, never to write anything (CVE-2024-6923: its generator
refolds headers and can write a decoded CR LF raw).
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from email import quoprimime
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32

#: ``edit(subtype, text)`` -> the new text, or None to leave the part alone.
Edit = Callable[[str, str], "str | None"]

MAX_DEPTH = 16  # nested multiparts deeper than this are left alone
_ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")


def split_entity(entity: bytes) -> tuple[bytes, bytes]:
    """(header block with its final CRLF, body); the blank line between is in neither."""
    if entity.startswith(b"\r\n"):
        return b"", entity[2:]
    i = entity.find(b"\r\n\r\n")
    if i < 0:
        return (entity if entity.endswith(b"\r\n") else entity + b"\r\n"), b""
    return entity[:i + 2], entity[i + 4:]


def edit_text_parts(head: bytes, body: bytes, edit: Edit,
                    subtypes: tuple[str, ...] = ("plain", "html"), depth: int = 0
                    ) -> tuple[bytes, bytes] | None:
    """(new head, new body) of one entity, or None when nothing changed."""
    hdrs = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n")
    if (hdrs.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
        return None
    ctype = hdrs.get_content_type()
    if ctype.startswith("multipart/") and depth < MAX_DEPTH:
        boundary = hdrs.get_boundary()
        new_body = _edit_multipart(body, boundary, edit, subtypes, depth) if boundary else None
        return None if new_body is None else (head, new_body)
    if ctype in {f"text/{s}" for s in subtypes}:
        return _edit_leaf(head, body, ctype[5:], edit)
    return None


def _edit_multipart(body: bytes, boundary: str, edit: Edit, subtypes: tuple[str, ...],
                    depth: int) -> bytes | None:
    delim = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary.encode("latin-1"))
                       + rb"(--)?[ \t]*(?=\r\n|\Z)")
    marks = list(delim.finditer(body))
    pieces, last, changed = [], 0, False
    for cur, nxt in itertools.pairwise(marks):
        if cur.group(1):  # close delimiter: the rest is epilogue
            break
        start = min(cur.end() + 2, nxt.start())
        ph, pb = split_entity(body[start:nxt.start()])
        new = edit_text_parts(ph, pb, edit, subtypes, depth + 1)
        if new is not None:
            pieces += [body[last:start], new[0], b"\r\n", new[1]]
            last, changed = nxt.start(), True
    if not changed:
        return None
    return b"".join([*pieces, body[last:]])


def _edit_leaf(head: bytes, body: bytes, subtype: str, edit: Edit
               ) -> tuple[bytes, bytes] | None:
    part: Message = BytesParser(policy=compat32).parsebytes(head + b"\r\n" + body)
    cte = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if cte not in _ENCODINGS:
        return None
    charset = part.get_content_charset() or "us-ascii"
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return None
    try:
        text = data.decode(charset, "surrogateescape")
    except LookupError:  # a charset Python does not know: leave the part as it is
        return None
    new_text = edit(subtype, text)
    if new_text is None or new_text == text:
        return None
    try:
        new_data = new_text.encode(charset, "surrogateescape")
    except UnicodeEncodeError:  # the filled text needs more than the part's charset
        new_data = new_text.encode("utf-8", "surrogateescape")
        head = set_param(head, "Content-Type", "charset", "utf-8", f"text/{subtype}")
    new_cte, encoded = encode(new_data, cte)
    if new_cte != cte:
        head = set_field(head, "Content-Transfer-Encoding", new_cte)
    return head, encoded


def encode(data: bytes, cte: str) -> tuple[str, bytes]:
    """Re-encode with the part's own transfer encoding; a 7bit part that is no longer ASCII,
    or a 7bit/8bit part whose lines grew past RFC 5322's 998 octets, becomes
    quoted-printable."""
    if cte == "base64":
        return cte, base64.encodebytes(data).replace(b"\n", b"\r\n")
    long_lines = any(len(ln) > 998 for ln in data.split(b"\r\n"))
    if cte == "quoted-printable" or long_lines or (cte == "7bit" and not data.isascii()):
        text = quoprimime.body_encode(data.decode("latin-1"), 76, "\r\n")
        return "quoted-printable", text.encode("ascii")
    return cte, data


# ---- header fields of one entity, as bytes ---------------------------------------------

def _fields(head: bytes) -> list[bytes]:
    out: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line
        else:
            out.append(line)
    return out


def _named(field: bytes, name: str) -> bool:
    return field.split(b":", 1)[0].strip().lower() == name.lower().encode()


def drop_fields(head: bytes, names: tuple[str, ...]) -> bytes:
    """The header block without the named fields (continuation lines go with their field)."""
    return b"".join(f for f in _fields(head) if not any(_named(f, n) for n in names))


def set_field(head: bytes, name: str, value: str) -> bytes:
    """``name: value`` in place of the first field of that name (appended when absent)."""
    new = f"{name}: {value}\r\n".encode("ascii")
    fields = _fields(head)
    for i, f in enumerate(fields):
        if _named(f, name):
            return b"".join([*fields[:i], new, *fields[i + 1:]])
    return head + new


def set_param(head: bytes, name: str, param: str, value: str, default: str) -> bytes:
    """Set one parameter of a structured field (``Content-Type: ...; charset=x``) in place,
    keeping the field's other bytes; the field is ``default`` when absent."""
    fields = _fields(head)
    repl = f"; {param}={value}".encode("ascii")
    pattern = re.compile(rb';\s*' + param.encode() + rb'\s*=\s*("[^"]*"|[^;\s]*)', re.I)
    for i, f in enumerate(fields):
        if _named(f, name):
            body = f.rstrip(b"\r\n")
            new, n = pattern.subn(lambda _m: repl, body, count=1)
            fields[i] = (new if n else body + repl) + b"\r\n"
            return b"".join(fields)
    return head + f"{name}: {default}; {param}={value}\r\n".encode("ascii")
