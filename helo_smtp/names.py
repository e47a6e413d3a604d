"""Domain name and mailbox checks for operator input (CLI, dev bootstrap).

Domains are checked as host names (RFC 1123 §2.1 letters-digits-hyphen labels, RFC 1035 §2.3.4
lengths) after IDNA conversion (RFC 5891, UTS #46 mapping via the ``idna`` library), so a
Unicode name is stored as its A-label form, the form DNS lookups and DKIM ``d=`` use.

Mailboxes are checked by the inbound listener's own validator (``inbound/addresses.py``: RFC
5321 §4.1.2 Dot-string local part, RFC 6531 UTF-8 allowed), so the CLI accepts exactly the
addresses the relay accepts in RCPT.

Both raise ``ValueError`` with a one-line reason that does not repeat the input.
"""

from __future__ import annotations

import re

import idna

from helo_smtp.inbound import addresses

MAX_DOMAIN = 253  # RFC 1035 §2.3.4: 255 octets on the wire = 253 characters in text form
MAX_LABEL = 63
MAX_LOCAL = 64
MAX_ADDRESS = 254

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


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
    mailbox. Case is kept (stores lower it).

    The decision is the inbound listener's (``inbound.addresses.check_mailbox`` with SMTPUTF8
    allowed), so an operator can suppress exactly the addresses the relay accepts in RCPT;
    this function only adds a reason a person can act on.
    """
    addr = text.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    if addresses.check_mailbox(addr, smtputf8=True) is None:
        return addr
    raise ValueError(_address_reason(addr))


def _address_reason(addr: str) -> str:
    local, at, domain = addr.rpartition("@")
    if not addr:
        return "empty address"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in addr):
        return "address contains control characters"
    if len(addr.encode("utf-8", "surrogateescape")) > MAX_ADDRESS:
        return f"address longer than {MAX_ADDRESS} octets"
    if not at or not local or not domain:
        return "address needs a local part, an @ and a domain"
    if len(local.encode("utf-8", "surrogateescape")) > MAX_LOCAL:
        return f"local part longer than {MAX_LOCAL} octets"
    try:
        domain_to_ascii(domain)
    except ValueError as exc:
        return str(exc)
    if addresses.ascii_domain(domain) is None:
        return "domain is not a valid host name"
    return "local part is not a dot-string nor a quoted string (RFC 5321 §4.1.2)"


def is_address(text: str) -> bool:
    try:
        check_address(text)
    except ValueError:
        return False
    return True
