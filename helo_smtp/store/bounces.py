"""Asynchronous bounces: what a DSN or a text bounce that came back to the return path does to
a recipient row (SPEC §13), in one write transaction.

- ``failed``: the recipient becomes ``bounced`` with its category, whether it was still
  queued or deferred (the remote server gave up for us) or already ``delivered`` (it accepted,
  then bounced). One ``delivery.bounced`` event (``source`` dsn or text); a recipient-class
  category adds a ``hard_bounce`` suppression; the broadcast moves the recipient from
  ``delivered`` to ``bounced``; the message status is refreshed. A second report for a
  recipient already bounced changes nothing (mail systems send duplicates).
- ``delayed``: one ``delivery.deferred`` event; the state stays (the message is on its way).
- A row that no longer exists (retention) is an ``unmatched`` report (see ``unmatched_in``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from helo_smtp.models import (
    SUPPRESSING_CATEGORIES,
    BounceCategory,
    DeliveryResult,
    RecipientState,
    SuppressionReason,
)
from helo_smtp.store import broadcasts, events, suppressions
from helo_smtp.store.queue import refresh_status_in

_LIVE = ("queued", "deferred", "delivered")


def recipient_in(c: sqlite3.Connection, row_id: int) -> Any:
    return c.execute(
        "SELECT r.id, r.message_id, r.address, r.state, m.channel_id, m.broadcast_id"
        " FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.id = ?",
        (row_id,)).fetchone()


def bounce_in(c: sqlite3.Connection, row_id: int, *, action: str, code: int | None,
              status: str | None, text: str, category: BounceCategory, remote: str | None,
              source: str, now: float) -> str:
    """Apply one report line to one recipient row; returns what happened: bounced,
    deferred, duplicate or unknown."""
    r = recipient_in(c, row_id)
    if r is None:
        return "unknown"
    common = {"message_id": r["message_id"], "recipient": r["address"],
              "channel_id": r["channel_id"], "broadcast_id": r["broadcast_id"], "at": now,
              "code": code, "status": status, "text": text[:500], "host": remote,
              "category": category.value, "source": source}
    if action != "failed":
        events.add(c, "delivery.deferred", **common)
        return "deferred"
    if r["state"] not in _LIVE:
        return "duplicate"
    c.execute("UPDATE recipients SET state = 'bounced', category = ?, last_code = ?,"
              " last_status = ?, last_text = ?, claimed_by = NULL, lease_until = NULL,"
              " updated_at = ? WHERE id = ?",
              (category.value, code, status, text[:500], now, row_id))
    events.add(c, "delivery.bounced", **common)
    if category in SUPPRESSING_CATEGORIES:
        suppressions.add_in(c, r["channel_id"], r["address"], SuppressionReason.HARD_BOUNCE,
                            r["message_id"])
    if r["broadcast_id"]:
        if r["state"] == "delivered":
            broadcasts.bump_in(c, r["broadcast_id"], delivered=-1)
        broadcasts.count_outcome_in(c, r["broadcast_id"], DeliveryResult(
            row_id, RecipientState.BOUNCED, source, text, code, status, category, at=now),
            first=False)
    refresh_status_in(c, r["message_id"])
    return "bounced"


def unmatched_in(c: sqlite3.Connection, now: float, **data: Any) -> None:
    """A report naming no recipient we know: kept as an internal event, never dropped."""
    events.add(c, "bounce.unmatched", at=now,
               **{k: v for k, v in data.items() if v not in (None, "")})


def complaint_row_in(c: sqlite3.Connection, row_id: int, now: float) -> Any:
    """(message id, address) of a row, for the complaint path (``engagement.complaint_in``)."""
    r = recipient_in(c, row_id)
    return None if r is None else (r["message_id"], r["address"])
