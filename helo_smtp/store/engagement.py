"""Opens, clicks, unsubscribes and complaints per (message, recipient).

Each hit is one write transaction: the ``engagement`` row (first time and hit count), and on the
*first* hit of a kind for that recipient, the broadcast's unique counter and one event
(``message.opened``, ``link.clicked``, ``recipient.unsubscribed``) carrying the message's tags and
metadata. Repeat hits (image proxies re-fetching a pixel, a second click) only raise ``count``,
so every broadcast counter equals the number of its events of that type.

An unsubscribe also puts the address on the channel's suppression list at once (RFC 8058 §3:
the one-click POST must take effect without further interaction).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import helo_smtp.store.broadcasts as broadcasts
import helo_smtp.store.events as events
import helo_smtp.store.suppressions as suppressions
from helo_smtp.models import SuppressionReason


class Kind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"


_COUNTER = {Kind.OPEN: "unique_opens", Kind.CLICK: "unique_clicks",
            Kind.UNSUBSCRIBE: "unsubscribes"}
_EVENT = {Kind.OPEN: "message.opened", Kind.CLICK: "link.clicked",
          Kind.UNSUBSCRIBE: "recipient.unsubscribed"}
COMPLAINT_EVENT = "recipient.complained"


@dataclass(frozen=True, slots=True)
class Hit:
    """What recording one hit did."""

    message_id: str
    recipient: str
    kind: str
    first: bool  # the first hit of this kind for (message, recipient): counted
    count: int  # hits of this kind for (message, recipient) so far
    channel_id: str
    broadcast_id: str | None


def _message(c: sqlite3.Connection, message_id: str) -> sqlite3.Row | None:
    return c.execute("SELECT id, channel_id, broadcast_id, tags, metadata FROM messages"
                     " WHERE id = ?", (message_id,)).fetchone()


def _is_recipient(c: sqlite3.Connection, message_id: str, recipient: str) -> bool:
    return c.execute("SELECT 1 FROM recipients WHERE message_id = ? AND lower(address) = ?"
                     " LIMIT 1", (message_id, recipient.lower())).fetchone() is not None


def _count_hit(c: sqlite3.Connection, message_id: str, recipient: str, kind: Kind,
               now: float) -> int:
    """Insert or bump the engagement row; returns the hit count after this one. (The
    qualified ``engagement.count`` keeps PostgreSQL from reading it as ambiguous.)"""
    row = c.execute(
        "INSERT INTO engagement (message_id, recipient, kind, first_at, count)"
        " VALUES (?, ?, ?, ?, 1) ON CONFLICT (message_id, recipient, kind)"
        " DO UPDATE SET count = engagement.count + 1 RETURNING count",
        (message_id, recipient, kind.value, now)).fetchone()
    return int(row[0])


def record_in(c: sqlite3.Connection, kind: Kind, message_id: str, recipient: str,
              now: float, **data: Any) -> Hit | None:
    """Record one hit inside a write transaction; None when the message or recipient is
    unknown (nothing is written then)."""
    msg = _message(c, message_id)
    recipient = recipient.lower()
    if msg is None or not _is_recipient(c, message_id, recipient):
        return None
    count = _count_hit(c, message_id, recipient, kind, now)
    bid = msg["broadcast_id"]
    if count == 1:
        if bid:
            broadcasts.bump_in(c, bid, **{_COUNTER[kind]: 1})
        events.add(c, _EVENT[kind], message_id=message_id, recipient=recipient,
                   channel_id=msg["channel_id"], broadcast_id=bid, at=now,
                   tags=json.loads(msg["tags"]), metadata=json.loads(msg["metadata"]), **data)
    if kind == Kind.UNSUBSCRIBE:
        suppressions.add_in(c, msg["channel_id"], recipient, SuppressionReason.UNSUBSCRIBE,
                            message_id)
    return Hit(message_id, recipient, kind.value, count == 1, count, msg["channel_id"], bid)


def complaint_in(c: sqlite3.Connection, message_id: str, recipient: str, now: float,
                 **data: Any) -> Hit | None:
    """A spam complaint (e.g. from a feedback-loop report): suppress with reason
    ``complaint`` and count it once per (message, recipient)."""
    msg = _message(c, message_id)
    recipient = recipient.lower()
    if msg is None or not _is_recipient(c, message_id, recipient):
        return None
    seen = c.execute("SELECT count(*) FROM events WHERE message_id = ? AND type = ?"
                     " AND recipient = ?", (message_id, COMPLAINT_EVENT, recipient)).fetchone()[0]
    bid = msg["broadcast_id"]
    if not seen:
        if bid:
            broadcasts.bump_in(c, bid, complaints=1)
        events.add(c, COMPLAINT_EVENT, message_id=message_id, recipient=recipient,
                   channel_id=msg["channel_id"], broadcast_id=bid, at=now,
                   tags=json.loads(msg["tags"]), metadata=json.loads(msg["metadata"]), **data)
    suppressions.add_in(c, msg["channel_id"], recipient, SuppressionReason.COMPLAINT, message_id)
    return Hit(message_id, recipient, "complaint", not seen, seen + 1, msg["channel_id"], bid)


class Engagement:
    """Record engagement from the HTTP side (async: the writes wait for their COMMIT without
    blocking the event loop) and read it back."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def record(self, kind: Kind | str, message_id: str, recipient: str,
                     **data: Any) -> Hit | None:
        """Record an open / click / unsubscribe. ``data`` (e.g. ``url``, ``user_agent``) goes
        into the event."""
        k, now = Kind(kind), time.time()
        return await self.db.awrite(lambda c: record_in(c, k, message_id, recipient, now, **data))

    async def open(self, message_id: str, recipient: str, **data: Any) -> Hit | None:
        return await self.record(Kind.OPEN, message_id, recipient, **data)

    async def click(self, message_id: str, recipient: str, url: str, **data: Any
                    ) -> Hit | None:
        return await self.record(Kind.CLICK, message_id, recipient, url=url, **data)

    async def unsubscribe(self, message_id: str, recipient: str, **data: Any) -> Hit | None:
        return await self.record(Kind.UNSUBSCRIBE, message_id, recipient, **data)

    def complaint(self, message_id: str, recipient: str) -> Hit | None:
        """Record a complaint (sync: for the CLI or a feedback-loop importer)."""
        now = time.time()
        return self.db.write(lambda c: complaint_in(c, message_id, recipient, now))

    def get(self, message_id: str, recipient: str | None = None) -> list[dict[str, Any]]:
        """Engagement rows of a message (optionally one recipient)."""
        sql, args = "SELECT * FROM engagement WHERE message_id = ?", [message_id]
        if recipient is not None:
            sql += " AND recipient = ?"
            args.append(recipient.lower())
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY recipient, kind",
                                                args).fetchall())
        return [dict(r) for r in rows]
