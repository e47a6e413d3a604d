"""A strict, small parser for the mailbox lists of ``From:`` and ``Sender:`` (RFC 5322 §3.4).

SPEC §14: every mailbox a recipient's mail client can show must be in a verified domain of the
account, so the parser must never see fewer addresses than a client does. Lenient parsers
(``email.utils.parseaddr``, ``email.headerregistry`` which records defects and carries on)
read ``x@acme.test <y@beta.test>`` or ``"x@acme.test" y@beta.test`` as one address while mail
clients show another. Here anything that is not a clean mailbox list raises ``Malformed``:

- ``mailbox-list = mailbox *("," mailbox)`` with ``mailbox = name-addr / addr-spec``; no group
  (``a: b@x;``), no empty list element, no source route, no domain literal;
- a display name is words (atoms, quoted strings) and, as RFC 5322 §4.1 ``obs-phrase`` allows,
  dots (``John Q. Public``); once its RFC 2047 encoded words are decoded (also inside quoted
  strings, as some clients do) it may hold no ``@``, ``<`` or ``>`` (an address shown there would
  be an address nobody checked) and no control or format character (bidi overrides);
- a local part is a dot-atom or one quoted string (RFC 5321 §4.1.2 ``"john doe"``), holding no
  ``@ < >`` nor an encoded word; a domain is a dot-atom in canonical form: ASCII LDH labels
  (A-labels must decode) or U-labels that IDNA 2008 takes without mapping (no fullwidth dots);
- comments are allowed where RFC 5322 puts CFWS, but only flat ones of plain text (no ``@``,
  ``<``, ``>``, quotes, nesting or encoded words), since clients show them too;
- the value must already be unfolded (no CR, LF or NUL left).

Pure and fast: one pass over the string, no regular expression per character.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
import unicodedata
from dataclasses import dataclass

import idna

from helo_smtp.inbound.addresses import ascii_domain


class Malformed(ValueError):
    """The header is not a clean RFC 5322 mailbox list."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    display: str  # the display name as a client shows it ('' when there is none)
    local: str  # the local part, unquoted
    domain: str  # the domain in ASCII (A-labels), lower-cased


_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~")
_SPECIALS = frozenset("<>@,.:;[]")
_SHOWN_AS_ADDRESS = frozenset("@<>")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "atom", "quoted" or one special character
    text: str  # atom text, quoted-string content (unescaped) or the special itself
    spaced: bool  # whitespace or a comment came right before it


def unfold(raw: bytes) -> str:
    """The value of a raw header field (``Name: value CRLF``, folded) as one line of text."""
    name, colon, value = raw.partition(b":")
    if not colon or name != name.strip():  # "From :" is obsolete syntax clients disagree on
        raise Malformed("a field name with white space")
    value = value[:-2] if value.endswith(b"\r\n") else value
    try:
        text = value.decode("utf-8")  # RFC 6532 allows UTF-8; anything else is not a header
    except UnicodeDecodeError:
        raise Malformed("not UTF-8") from None
    text = _FOLD.sub("", text)
    if any(ch in text for ch in "\r\n\0"):
        raise Malformed("CR, LF or NUL")
    return text


def parse_mailbox_list(text: str) -> list[Mailbox]:
    """Every mailbox of ``text`` (an unfolded header value), or ``Malformed``."""
    tokens = _tokens(text)
    boxes: list[Mailbox] = []
    pos = 0
    while True:
        box, pos = _mailbox(tokens, pos)
        boxes.append(box)
        if pos == len(tokens):
            return boxes
        if tokens[pos].kind != ",":
            raise Malformed("expected a comma between mailboxes")
        pos += 1


def parse_mailbox(text: str) -> Mailbox:
    """Exactly one mailbox (``Sender:``, RFC 5322 §3.6.2)."""
    boxes = parse_mailbox_list(text)
    if len(boxes) != 1:
        raise Malformed("more than one mailbox")
    return boxes[0]


# ---- tokens ------------------------------------------------------------------------------

def _bad_char(ch: str) -> bool:
    """Control and format characters (bidi overrides, zero-width joiners), line separators."""
    return ch != " " and unicodedata.category(ch)[0] in "CZ"


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n, spaced = 0, len(text), False
    while i < n:
        ch = text[i]
        if ch in " \t":
            i, spaced = i + 1, True
        elif ch == "(":
            i, spaced = _comment(text, i), True
        elif ch == '"':
            content, i = _quoted(text, i)
            out.append(_Token("quoted", content, spaced))
            spaced = False
        elif ch in _SPECIALS:
            out.append(_Token(ch, ch, spaced))
            i, spaced = i + 1, False
        elif ch in _ATEXT or (ord(ch) > 127 and not _bad_char(ch)):
            j = i + 1
            while j < n and (text[j] in _ATEXT or (ord(text[j]) > 127 and not _bad_char(text[j]))):
                j += 1
            out.append(_Token("atom", text[i:j], spaced))
            i, spaced = j, False
        else:
            raise Malformed("a character that has no place in a mailbox list")
    return out


def _comment(text: str, start: int) -> int:
    """Index after a flat plain-text comment starting at ``start`` (the ``(``)."""
    end = text.find(")", start + 1)
    if end < 0:
        raise Malformed("unclosed comment")
    body = text[start + 1:end]
    if any(ch in '()\\"@<>' or _bad_char(ch) for ch in body) or "=?" in body:
        raise Malformed("a comment that could show an address")
    return end + 1


def _quoted(text: str, start: int) -> tuple[str, int]:
    """(content with quoted-pairs resolved, index after the closing quote)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            i += 1
            if i == len(text):
                break
            ch = text[i]
        if _bad_char(ch) and ch != "\t":
            raise Malformed("control character in a quoted string")
        out.append(ch)
        i += 1
    raise Malformed("unclosed quoted string")


# ---- grammar -----------------------------------------------------------------------------

def _mailbox(tokens: list[_Token], pos: int) -> tuple[Mailbox, int]:
    """``name-addr / addr-spec`` starting at ``pos``."""
    end = pos
    while end < len(tokens) and tokens[end].kind in ("atom", "quoted", "."):
        end += 1
    nxt = tokens[end].kind if end < len(tokens) else ""
    if nxt == "<":
        display = _display(tokens[pos:end])
        local, domain, after = _addr_spec(tokens, end + 1)
        if after >= len(tokens) or tokens[after].kind != ">":
            raise Malformed("unclosed angle address")
        return Mailbox(display, local, domain), after + 1
    local, domain, after = _addr_spec(tokens, pos)
    return Mailbox("", local, domain), after


def _display(words: list[_Token]) -> str:
    if not words:
        return ""
    if words[0].kind == ".":
        raise Malformed("a display name starting with a dot")
    parts: list[str] = []
    for tok in words:
        if parts and tok.spaced:
            parts.append(" ")
        parts.append(tok.text)
    shown = decode_words("".join(parts))
    if any(ch in _SHOWN_AS_ADDRESS or _bad_char(ch) for ch in shown):
        raise Malformed("a display name that could show an address")
    return shown


def _addr_spec(tokens: list[_Token], pos: int) -> tuple[str, str, int]:
    """(local part, ASCII domain, index after) for ``local-part "@" domain``."""
    local, pos = _local_part(tokens, pos)
    if pos >= len(tokens) or tokens[pos].kind != "@" or tokens[pos].spaced:
        raise Malformed("expected @")
    domain, pos = _dot_atom(tokens, pos + 1, "domain")
    return local, _canonical_domain(domain), pos


def _local_part(tokens: list[_Token], pos: int) -> tuple[str, int]:
    if pos < len(tokens) and tokens[pos].kind == "quoted":
        local, pos = tokens[pos].text, pos + 1
        if not local:
            raise Malformed("empty quoted local part")
    else:
        local, pos = _dot_atom(tokens, pos, "local part")
    if any(ch in _SHOWN_AS_ADDRESS for ch in local) or "=?" in local:
        raise Malformed("a local part that could show another address")
    return local, pos


def _dot_atom(tokens: list[_Token], pos: int, what: str) -> tuple[str, int]:
    """``atom *("." atom)`` with nothing in between (RFC 5322 §3.2.3, no obsolete CFWS)."""
    if pos >= len(tokens) or tokens[pos].kind != "atom" or (what == "domain"
                                                              and tokens[pos].spaced):
        raise Malformed(f"expected a {what}")
    parts = [tokens[pos].text]
    pos += 1
    while (pos + 1 < len(tokens) and tokens[pos].kind == "." and not tokens[pos].spaced
           and tokens[pos + 1].kind == "atom" and not tokens[pos + 1].spaced):
        parts.append(tokens[pos + 1].text)
        pos += 2
    if pos < len(tokens) and tokens[pos].kind == ".":
        raise Malformed(f"a dot out of place in the {what}")
    return ".".join(parts), pos


def _canonical_domain(domain: str) -> str:
    """The A-label form of a domain written canonically, else ``Malformed``.

    UTS #46 mapping is not applied to what the header says: ``acme．test`` (a fullwidth dot)
    or upper-case U-labels would be shown as written, not as the domain they map to."""
    try:
        if not domain.isascii():
            written = domain
            domain = idna.encode(domain, uts46=False).decode("ascii")
            if idna.decode(domain) != written.lower():  # idna splits on U+FF0E, U+3002 too
                raise Malformed("not a canonical domain name")
        for label in domain.split("."):
            if label[:4].lower() == "xn--":
                idna.decode(label)  # a clean A-label, which clients show as its U-label
    except (UnicodeError, idna.IDNAError):
        raise Malformed("not a domain name") from None
    ascii_name = ascii_domain(domain)
    if ascii_name is None:
        raise Malformed("not a domain name")
    return ascii_name


# ---- RFC 2047 --------------------------------------------------------------------------

def decode_words(text: str) -> str:
    """``text`` with every RFC 2047 encoded word decoded; an undecodable one is
    ``Malformed`` (a client would show something we cannot check)."""
    if "=?" not in text:
        return text
    return _ENCODED_WORD.sub(_decode_word, text)


def _decode_word(m: re.Match[str]) -> str:
    charset, encoding, payload = m.group(1), m.group(2).lower(), m.group(3)
    try:
        codecs.lookup(charset)
        if encoding == "b":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        else:
            data = quopri.decodestring(payload.replace("_", " ").encode("ascii"), header=True)
        return data.decode(charset)
    except (LookupError, binascii.Error, ValueError, UnicodeError):
        raise Malformed("an encoded word that does not decode") from None
