"""Test mode (SPEC §15): a message from a test credential (or, later, a test API key) passes
every rule and gets the real reply, and is recorded with its events, but nothing is delivered.

Its outcomes are decided in the accept transaction itself, so a test recipient never enters the
delivery queue (no worker can claim it; no configuration mistake can send it). They are written
by the same code that records real outcomes (``queue.record_in``): attempts, events, broadcast
counters and status, with stage ``simulator`` and host ``simulator.invalid`` (RFC 2606: the
``.invalid`` TLD never resolves). The reserved addresses, as Postmark's and Mailgun's:

- ``bounce@simulator.invalid``: a hard bounce (550 5.1.1, ``invalid_recipient``);
- ``complaint@simulator.invalid``: delivered, then a ``recipient.complained`` event;
- ``deferred@simulator.invalid``: a deferral (451 4.2.0) first, then delivered;
- any other address: delivered (250).

Simulated bounces and complaints add no suppression (``queue._apply_result`` skips stage
``simulator``): an app tests its handlers again and again with the same address. Test mail
is charged neither to send limits nor to a pending account's free sends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import helo_smtp.store.events as events
from helo_smtp.models import BounceCategory, DeliveryResult, NewMessage, RecipientState

STAGE = "simulator"
DOMAIN = "simulator.invalid"
BOUNCE, COMPLAINT, DEFERRED = (f"{k}@{DOMAIN}" for k in ("bounce", "complaint", "deferred"))
COMPLAINT_EVENT = "recipient.complained"  # as engagement.COMPLAINT_EVENT


def _result(rid: int, msg: NewMessage, bid: str | None, state: RecipientState, code: int,
            status: str, text: str, category: BounceCategory | None = None) -> DeliveryResult:
    return DeliveryResult(rid, state, STAGE, text, code=code, status=status, category=category,
                          remote_host=DOMAIN, next_attempt_at=msg.created_at,
                          at=msg.created_at, channel_id=msg.channel_id, broadcast_id=bid)


def _final(rid: int, address: str, msg: NewMessage, bid: str | None) -> DeliveryResult:
    if address.lower() == BOUNCE:
        return _result(rid, msg, bid, RecipientState.BOUNCED, 550, "5.1.1",
                       "simulated bounce: mailbox does not exist",
                       BounceCategory.INVALID_RECIPIENT)
    return _result(rid, msg, bid, RecipientState.DELIVERED, 250, "2.0.0", "simulated delivery")


def simulate_in(c: sqlite3.Connection, msg: NewMessage, bid: str | None,
                record: Callable[[sqlite3.Connection, Iterable[DeliveryResult]], Any]) -> None:
    """Mark the just-inserted message as a test and settle its queued recipients
    (``record`` is ``queue.record_in``, passed in: queue imports this module)."""
    c.execute("UPDATE messages SET test = 1 WHERE id = ?", (msg.id,))
    rows = [(r["id"], r["address"]) for r in c.execute(
        "SELECT id, address FROM recipients WHERE message_id = ? AND state = 'queued'"
        " ORDER BY id", (msg.id,))]
    deferred = [_result(rid, msg, bid, RecipientState.DEFERRED, 451, "4.2.0",
                        "simulated deferral: try again later", BounceCategory.OTHER)
                for rid, a in rows if a.lower() == DEFERRED]
    if deferred:
        record(c, deferred)
    record(c, [_final(rid, a, msg, bid) for rid, a in rows])
    for _, a in rows:
        if a.lower() == COMPLAINT:
            events.add(c, COMPLAINT_EVENT, message_id=msg.id, recipient=a.lower(),
                       channel_id=msg.channel_id, broadcast_id=bid, at=msg.created_at,
                       tags=msg.tags, metadata=msg.metadata, simulated=True)
            if bid:
                c.execute("UPDATE broadcasts SET complaints = complaints + 1 WHERE id = ?",
                          (bid,))
