"""Envelope addresses and EHLO names: parsing and validation (pure functions).

aiosmtpd passes bare CR/LF, NUL and control characters through in EHLO and in MAIL/RCPT
arguments, and its address parser accepts RFC 5322 forms (comments, quoted strings, obsolete
routes) that cannot be sent on again unchanged. We accept the RFC 5321 ``Path`` with a
Dot-string or Quoted-string local part (``"john doe"@example.com``, §4.1.2): every address we
accept is written back by the delivery side (``aiosmtplib.email.quote_address``) byte for byte
as it arrived.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from enum import StrEnum

import idna

MAX_LOCAL = 64  # octets, RFC 5321 §4.5.3.1.1
MAX_ADDRESS = 254  # octets, RFC 5321 §4.5.3.1.3 path minus the angle brackets
MAX_DOMAIN = 253  # octets, RFC 1035 §2.3.4 without the final dot
MAX_LABEL = 63

# RFC 5322 §3.2.3 atext
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~")
_LDH = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# EHLO names: LDH labels; underscores are tolerated because Windows machine names carry them.
_HELO_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
_ROUTE = re.compile(r"@[A-Za-z0-9.\-\[\]:]+(?:,@[A-Za-z0-9.\-\[\]:]+)*:")


class AddressProblem(StrEnum):
    """Why an address was refused; the handler maps it to a catalog reply."""

    SYNTAX = "syntax"  # bad syntax, control characters, over-long parts, bad domain
    NEEDS_SMTPUTF8 = "needs_smtputf8"  # non-ASCII without the SMTPUTF8 parameter


def parse_path(arg: str) -> tuple[str, str] | None:
    """Split a MAIL/RCPT argument (after ``FROM:``/``TO:``) into (mailbox, parameters).

    ``<mailbox> [params]`` per RFC 5321 §4.1.2; a source route is dropped as §C allows; a bare
    mailbox without brackets is tolerated (as Postfix does). None when malformed or empty
    (``<>``: a null sender cannot be on a verified domain, and is never a recipient).
    """
    if arg.startswith("<"):
        end = _closing_bracket(arg)
        if end < 0:
            return None
        inner, rest = arg[1:end], arg[end + 1:]
        if rest and not rest.startswith(" "):
            return None
        route = _ROUTE.match(inner)
        if route:
            inner = inner[route.end():]
    else:
        inner, _, rest = arg.partition(" ")
    if not inner:
        return None
    return inner, rest.strip()


def _closing_bracket(arg: str) -> int:
    """Index of the ``>`` that ends ``<path>``, skipping a quoted local part; -1 if none."""
    quoted = escaped = False
    for i, ch in enumerate(arg):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


def _bad_char(ch: str) -> bool:
    """Control, format, separator and surrogate characters (undecodable bytes)."""
    return unicodedata.category(ch)[0] in "CZ"


def _valid_quoted(local: str, utf8: bool) -> bool:
    """RFC 5321 §4.1.2 ``Quoted-string``: qtextSMTP (%d32-33 / %d35-91 / %d93-126) and
    quoted-pairSMTP (backslash + %d32-126); UTF-8 too with SMTPUTF8 (RFC 6531 §3.3)."""
    if len(local) < 3 or not (local.startswith('"') and local.endswith('"')):
        return False
    body, i = local[1:-1], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 1
            if i == len(body) or not 32 <= ord(body[i]) <= 126:
                return False
        elif not _qtext(ch, utf8):
            return False
        i += 1
    return len(local.encode("utf-8")) <= MAX_LOCAL


def _qtext(ch: str, utf8: bool) -> bool:
    if ord(ch) > 127:
        return utf8 and not _bad_char(ch)
    return 32 <= ord(ch) <= 126 and ch != '"'


def _valid_local(local: str, utf8: bool) -> bool:
    if local.startswith('"'):
        return _valid_quoted(local, utf8)
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    for ch in local:
        if ch == "." or ch in _ATEXT:
            continue
        if not (utf8 and ord(ch) > 127 and not _bad_char(ch)):
            return False
    return len(local.encode("utf-8")) <= MAX_LOCAL


def ascii_domain(domain: str) -> str | None:
    """The domain in ASCII (A-labels), lower-cased, or None when it is not a valid host name.

    At least two labels, each LDH, and a top-level label that is not all digits (so a bare
    IPv4 address is not a domain). Address literals are refused: mail for a Helo account
    goes to domains.
    """
    if not domain or any(_bad_char(ch) for ch in domain):
        return None
    try:
        # UTS #46 / IDNA 2008 (the idna library), the same mapping the CLI stores domains with;
        # Python's own "idna" codec is IDNA 2003 and maps e.g. "ß" differently.
        ascii_name = (idna.encode(domain, uts46=True).decode("ascii")
                      if not domain.isascii() else domain)
    except (UnicodeError, idna.IDNAError):
        return None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_DOMAIN or len(labels) < 2 or labels[-1].isdigit():
        return None
    if not all(_LDH.match(label) for label in labels):
        return None
    return ascii_name.lower()


def check_mailbox(address: str, smtputf8: bool) -> AddressProblem | None:
    """None when ``address`` is an acceptable envelope mailbox, else the problem."""
    if not address.isascii() and not smtputf8:
        if any(_bad_char(ch) for ch in address):
            return AddressProblem.SYNTAX
        return AddressProblem.NEEDS_SMTPUTF8
    if len(address.encode("utf-8", "surrogateescape")) > MAX_ADDRESS:
        return AddressProblem.SYNTAX
    local, at, domain = address.rpartition("@")
    if not at or not _valid_local(local, smtputf8) or ascii_domain(domain) is None:
        return AddressProblem.SYNTAX
    return None


def domain_of(address: str) -> str:
    """The domain of a validated mailbox in ASCII, lower-cased."""
    return ascii_domain(address.rpartition("@")[2]) or ""


def valid_helo(name: str) -> bool:
    """RFC 5321 §4.1.1.1: a host name (one label is tolerated) or an address literal."""
    if not name or not name.isascii() or any(_bad_char(ch) for ch in name):
        return False
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1]
        if literal[:5].lower() == "ipv6:":
            return _is_ip(literal[5:], 6)
        return _is_ip(literal, 4)
    host = name[:-1] if name.endswith(".") else name
    if len(host) > MAX_DOMAIN:
        return False
    return all(_HELO_LABEL.match(label) for label in host.split("."))


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False
