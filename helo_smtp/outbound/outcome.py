"""What to do when delivery goes wrong: the failure policy, after Postfix's ``smtp_trouble.c``.

Every problem met while delivering is first turned into an ``Outcome`` value: a remote reply
(code, RFC 3463 enhanced status, text) or a local one we make up for a failure that has no
reply (DNS, TCP, TLS, timeouts; see ``translate.py``, the one place foreign exceptions are
caught). Each outcome carries the stage it happened at (dns, connect, banner, ehlo, starttls,
mail, rcpt, data, deadline) and a ``BounceCategory`` (``classify.py``). The policy then picks
one of three actions for each recipient it concerns:

next host
    A transient (4xx or local) problem at a host that is not the last one on the MX list for
    this attempt. Nothing is recorded yet; the recipient is tried at the next address, as
    Postfix keeps such recipients (``SMTP_RCPT_KEEP``) for a backup server. The outcome is
    remembered so that, if every host fails, the last one is what we report.

defer
    A transient problem at the last host, or one that must not be retried elsewhere right
    away. The recipient becomes ``deferred`` and is due again on the retry ladder
    (``retry.py``); a deferral whose next try would fall after the message's lifetime makes
    it ``expired`` instead (reported once: an expired recipient is final).

bounce
    A permanent (5xx) reply, or a local failure we know can never succeed (NXDOMAIN, null MX,
    no SMTPUTF8 for a non-ASCII address). The recipient becomes ``bounced`` with its category;
    only ``invalid_recipient`` and ``domain_not_found`` add a hard-bounce suppression (the
    store does that from the category).

Per stage:

- **dns**: NXDOMAIN (5.1.2), a null MX (5.1.10, RFC 7505) and MX hosts that all lack an
  address (5.4.4) bounce at once; SERVFAIL and timeouts defer (4.4.3, category ``dns``).
- **connect / banner / ehlo / starttls**: the whole host is unusable, so every recipient
  still pending goes to the next host, or is deferred at the last one. A 5xx greeting is
  treated like a 4xx (Postfix's ``smtp_skip_5xx_greeting``): a host that will not talk to us
  says nothing about the recipient. A 5xx reply to EHLO *and* HELO bounces (``smtp_site_fail``
  with a hard error). An opportunistic STARTTLS whose handshake fails is retried in plaintext
  on a new connection to the same host; for a domain in ``require_tls_domains`` a host without
  STARTTLS, a failed handshake or an unverified certificate is a transient ``tls`` failure.
- **mail**: the reply applies to every recipient of the transaction (``smtp_mesg_fail``).
- **rcpt**: the reply applies to that recipient alone (``smtp_rcpt_fail``). ``452 4.5.3``
  (too many recipients, RFC 5321 §4.5.3.1.10) is not a failure: the recipients not yet sent
  go out in a new transaction right after this one.
- **data**: a reply applies to every recipient accepted at RCPT. A connection lost or a timeout
  during DATA is *ambiguous*: the server may have taken the message after the final dot, so
  the recipients are deferred, never sent to the next host in the same attempt (a retry may
  then duplicate the message, which RFC 5321 §6.1 prefers to a loss).
- **deadline**: the attempt ran past ``delivery.total_deadline``; whatever is still pending
  is deferred (category ``connection``).
- A ``421`` at any stage means the server is closing: transient for every pending recipient.

After any non-SMTP error (lost connection, timeout, TLS error) the connection is dropped; after
an SMTP reply it stays usable and is cached for the next message to the same host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from helo_smtp.models import BounceCategory
from helo_smtp.outbound.classify import classify

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class Action(StrEnum):
    DELIVERED = "delivered"
    NEXT_HOST = "next_host"
    DEFER = "defer"
    BOUNCE = "bounce"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one or more recipients at one host: a reply or a local failure."""

    stage: str
    text: str
    code: int | None = None
    status: str | None = None  # RFC 3463 enhanced status
    category: BounceCategory | None = None  # None only when delivered
    permanent: bool = False
    ambiguous: bool = False  # lost after DATA may have completed: defer, never next host
    delivered: bool = False

    def line(self) -> str:
        """The reply as one line, for logs and records."""
        parts = [str(self.code) if self.code else "", self.status or "", self.text]
        return " ".join(p for p in parts if p)


def split_status(message: str) -> tuple[str | None, str]:
    """(enhanced status, rest of the text) from a reply text like ``5.1.1 No such user``."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    m = _ENHANCED.match(text)
    if not m:
        return None, text
    return m.group(0), text[m.end():].strip()


def from_reply(stage: str, code: int, message: str) -> Outcome:
    """An SMTP reply as an outcome. The first digit decides permanence, except at the
    greeting, where a 5xx only says the host will not talk to us (see the module text)."""
    status, text = split_status(message)
    if status and status[0] != str(code)[0]:
        status = None  # RFC 3463 §2: a class that contradicts the code is ignored
    if 200 <= code < 300:
        return Outcome(stage, text, code, status, delivered=True)
    permanent = 500 <= code < 600 and stage != "banner"
    category = classify(code, status, text)
    return Outcome(stage, text, code, status, category, permanent)


def local(stage: str, status: str, text: str, category: BounceCategory,
          ambiguous: bool = False) -> Outcome:
    """A failure without a remote reply (DNS, TCP, TLS, timeouts, our own checks)."""
    return Outcome(stage, text, None, status, category, status.startswith("5"), ambiguous)


def is_overflow(o: Outcome) -> bool:
    """``452 4.5.3`` at RCPT: the server takes no more recipients in this transaction."""
    return o.stage == "rcpt" and o.code == 452 and o.status == "4.5.3"


def closes_connection(o: Outcome) -> bool:
    """421: the server is closing the transmission channel (RFC 5321 §3.8)."""
    return o.code == 421


def decide(o: Outcome, *, last_host: bool) -> Action:
    """The action for one recipient given an outcome at one host."""
    if o.delivered:
        return Action.DELIVERED
    if o.permanent:
        return Action.BOUNCE
    if o.ambiguous or last_host:
        return Action.DEFER
    return Action.NEXT_HOST


def as_stage(o: Outcome, stage: str) -> Outcome:
    return replace(o, stage=stage)
