"""DKIM signing (RFC 6376) with dkimpy, relaxed/relaxed, over the final message bytes.

The signing domain is the ``From:`` header's domain when the sending account owns it with a
key (so the signature aligns for DMARC, RFC 7489 §3.1.1), else the envelope sender's domain,
else nothing is signed. Headers signed: dkimpy's RFC 6376 §5.4.1 list present in the message
(``From`` signed twice so none can be added), plus ``List-Unsubscribe-Post``, which RFC 8058 §4
requires under the signature. Signing runs after per-recipient personalization, so each
personalized copy carries its own valid signature.

Nothing is stripped here: the stored bytes already lack the control headers.
"""

from __future__ import annotations

import logging
import time
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

import dkim

from helo_smtp.models import Domain, address_domain

log = logging.getLogger("helo_smtp.delivery")

KEY_CACHE_SECONDS = 60.0  # a rotated key is used within a minute
CANONICALIZE = (b"relaxed", b"relaxed")
EXTRA_SIGNED = (b"list-unsubscribe-post",)


def from_domain(raw: bytes) -> str:
    """The domain of the first ``From:`` address ('' when there is none)."""
    headers = BytesHeaderParser().parsebytes(raw)
    values = [str(v) for v in headers.get_all("From", [])]
    for _, addr in getaddresses(values):
        if "@" in addr:
            return address_domain(addr)
    return ""


def sign(raw: bytes, domain: Domain) -> bytes:
    """``raw`` with a DKIM-Signature header for ``domain`` prepended."""
    d = dkim.DKIM(raw, linesep=b"\r\n")
    include = d.default_sign_headers()
    include += [name for name, _ in d.headers if name.lower() in EXTRA_SIGNED]
    header = d.sign(domain.dkim_selector.encode(), domain.name.encode("idna"),
                    domain.dkim_private_key.encode(), canonicalize=CANONICALIZE,
                    include_headers=include)
    return header + raw


class Signer:
    """Finds the key for a message and signs it; keys are cached for a minute."""

    def __init__(self, domains: Any) -> None:
        self.domains = domains  # store.domains
        self._keys: dict[tuple[str, str], tuple[float, Domain | None]] = {}

    def key_for(self, account_id: str, name: str) -> Domain | None:
        if not name:
            return None
        hit = self._keys.get((account_id, name))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        dom = self.domains.get(name)
        if dom is not None and (dom.account_id != account_id or not dom.dkim_private_key):
            dom = None
        self._keys[(account_id, name)] = (time.monotonic() + KEY_CACHE_SECONDS, dom)
        return dom

    def sign(self, raw: bytes, account_id: str, sender: str) -> bytes:
        """Signed bytes, or ``raw`` unchanged when no key applies or signing fails."""
        dom = (self.key_for(account_id, from_domain(raw))
               or self.key_for(account_id, address_domain(sender)))
        if dom is None:
            return raw
        try:
            return sign(raw, dom)
        except dkim.DKIMException as exc:
            # A broken key must not stop delivery; the operator sees it in the log.
            log.error("event=dkim_failed domain=%s error=%s", dom.name,
                      " ".join(str(exc).split()))
            return raw
