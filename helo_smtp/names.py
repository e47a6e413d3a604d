"""Domain name and mailbox checks for operator input (CLI, dev bootstrap).

Domains are checked as host names (RFC 1123 §2.1 letters-digits-hyphen labels, RFC 1035 §2.3.4
lengths) after IDNA conversion (RFC 5891, UTS #46 mapping via the ``idna`` library), so a
Unicode name is stored as its A-label form, the form DNS lookups and DKIM ``d=`` use.

Mailboxes get the RFC 5321 §4.1.2 check: dot-atom or quoted-string local part of at most 64
octets, a domain as above or an address literal, 254 characters in all (RFC 5321 §4.5.3.1 with
the path's angle brackets removed). UTF-8 in the local part is allowed (RFC 6531).

Both raise ``ValueError`` with a one-line reason that does not repeat the input.
"""

from __future__ import annotations

import ipaddress
import re

import idna

MAX_DOMAIN = 253  # RFC 1035 §2.3.4: 255 octets on the wire = 253 characters in text form
MAX_LABEL = 63
MAX_LOCAL = 64
MAX_ADDRESS = 254

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# RFC 5322 atext, plus any non-ASCII character for RFC 6531 (SMTPUTF8) local parts.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_ATOM = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_QUOTED = re.compile(r'^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"$')


def domain_to_ascii(name: str) -> str:
    """The lower-case A-label form of a host/domain name; ``ValueError`` when it is not one.

    A trailing dot is accepted and dropped. A name needs at least two labels and a top-level
    label that is not all digits (so an IPv4 address is not taken for a domain).
    """
    text = name.strip().rstrip(".")
    if not text:
        raise ValueError("empty domain name")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text):
        raise ValueError("domain name contains spaces or control characters")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a valid internationalised domain name ({exc})") from None
    text = text.lower()
    if len(text) > MAX_DOMAIN:
        raise ValueError(f"domain name longer than {MAX_DOMAIN} characters")
    labels = text.split(".")
    for label in labels:
        _check_label(label)
    if len(labels) < 2:
        raise ValueError("domain name needs at least two labels (like example.com)")
    if labels[-1].isdigit():
        raise ValueError("top-level label is all digits")
    return text


def _check_label(label: str) -> None:
    if not label:
        raise ValueError("domain name has an empty label")
    if len(label) > MAX_LABEL:
        raise ValueError(f"domain label longer than {MAX_LABEL} characters")
    if not _LDH.match(label):
        raise ValueError("domain label may hold only letters, digits and inner hyphens")
    if label.startswith("xn--"):
        try:
            idna.decode(label)
        except idna.IDNAError:
            raise ValueError("domain label is not a valid IDNA A-label") from None


def is_domain(name: str) -> bool:
    try:
        domain_to_ascii(name)
    except ValueError:
        return False
    return True


def check_address(text: str) -> str:
    """The address stripped of blanks and angle brackets; ``ValueError`` when it is not a
    mailbox. Case is kept (the local part is case-sensitive in principle; stores lower it)."""
    addr = text.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    if not addr:
        raise ValueError("empty address")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in addr):
        raise ValueError("address contains control characters")
    if len(addr) > MAX_ADDRESS:
        raise ValueError(f"address longer than {MAX_ADDRESS} characters")
    local, at, domain = addr.rpartition("@")
    if not at or not local:
        raise ValueError("address needs a local part, an @ and a domain")
    if len(local.encode("utf-8")) > MAX_LOCAL:
        raise ValueError(f"local part longer than {MAX_LOCAL} octets")
    if not (_DOT_ATOM.match(local) or _QUOTED.match(local)):
        raise ValueError("local part is not a dot-atom or quoted string")
    _check_mail_domain(domain)
    return addr


def _check_mail_domain(domain: str) -> None:
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        # RFC 5321 §4.1.3: IPv4 literals are bare, IPv6 ones carry the "IPv6:" tag.
        v6 = literal[:5].lower() == "ipv6:"
        try:
            if v6:
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            raise ValueError("address literal is not an IP address") from None
        return
    domain_to_ascii(domain)


def is_address(text: str) -> bool:
    try:
        check_address(text)
    except ValueError:
        return False
    return True
