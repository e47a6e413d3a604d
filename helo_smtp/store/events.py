"""The event log: one row per thing that happened, written in the same transaction as the change.

Internal types: message.received, recipient.accepted, recipient.suppressed, delivery.delivered,
delivery.deferred, delivery.bounced, message.expired, suppression.added, suppression.removed,
message.opened, link.clicked, recipient.unsubscribed, recipient.complained, queue.purged,
queue.held, queue.released, queue.retried, bounce.unmatched.

The ten of them that are SPEC §12's public events (``PUBLIC``: accepted, delivered, ...) get a
UUIDv7 ``uid`` and, in the same statement batch, one pending row in ``webhook_deliveries`` per
enabled webhook endpoint of the channel that wants that type: the outbox the dispatcher
(``helo_smtp/events/dispatcher.py``) drains. So an event and its pending webhook deliveries are
committed, or lost, together with the state change (kill -9 cannot separate them).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from helo_smtp.models import uuid7

#: internal type -> the public type of SPEC §12
PUBLIC: dict[str, str] = {
    "recipient.accepted": "accepted",
    "delivery.delivered": "delivered",
    "delivery.deferred": "deferred",
    "delivery.bounced": "bounced",
    "message.expired": "expired",
    "recipient.suppressed": "suppressed",
    "message.opened": "opened",
    "link.clicked": "clicked",
    "recipient.unsubscribed": "unsubscribed",
    "recipient.complained": "complained",
}
INTERNAL: dict[str, str] = {v: k for k, v in PUBLIC.items()}
PUBLIC_TYPES: tuple[str, ...] = tuple(PUBLIC.values())

_FAN_OUT = (
    "INSERT INTO webhook_deliveries (endpoint_id, event_id, created_at, next_attempt_at,"
    " updated_at) SELECT id, ?, ?, ?, ? FROM webhooks WHERE channel_id = ?"
    " AND status = 'enabled' AND (events = '' OR (',' || events || ',') LIKE ?)")


def add(conn: sqlite3.Connection, type_: str, *, message_id: str | None = None,
        recipient: str | None = None, channel_id: str | None = None,
        broadcast_id: str | None = None, at: float | None = None, **data: Any) -> None:
    """Append one event (call inside a write transaction); a public one also queues its
    webhook deliveries."""
    at = at or time.time()
    public = PUBLIC.get(type_)
    row = conn.execute(
        "INSERT INTO events (at, type, message_id, recipient, channel_id, broadcast_id, data,"
        " uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (at, type_, message_id, recipient, channel_id, broadcast_id,
         json.dumps(data, separators=(",", ":"), default=str),
         uuid7() if public else None)).fetchone()
    if public and channel_id:
        conn.execute(_FAN_OUT, (row[0], at, at, at, channel_id, f"%,{public},%"))


def purge_in(c: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` events older than ``before`` and the webhook deliveries of
    that age (retention, ``[events] retention_days``); returns the events deleted."""
    n = c.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?"
                  " ORDER BY at LIMIT ?)", (before, limit)).rowcount
    c.execute("DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
              " WHERE created_at < ? AND state <> 'pending' LIMIT ?)", (before, limit))
    return n


def _feed_where(message_id: str | None, recipient: str | None, types: list[str] | None,
                since: float | None, until: float | None) -> tuple[str, list[Any]]:
    where, args = ["e.uid IS NOT NULL AND e.type <> 'webhook.test'"], []  # public events
    if message_id:
        where.append("e.message_id = ?")
        args.append(message_id)
    if recipient:
        where.append("e.recipient IN (?, ?)")  # engagement rows keep the lowered form
        args += [recipient, recipient.lower()]
    if types:
        where.append(f"e.type IN ({','.join('?' * len(types))})")
        args += [INTERNAL[t] for t in types]
    if since is not None:
        where.append("e.at >= ?")
        args.append(since)
    if until is not None:
        where.append("e.at < ?")
        args.append(until)
    return " AND ".join(where), args


#: the columns ``helo_smtp.events.payload.public_event`` builds an event from
FEED_COLUMNS = ("e.id AS seq, e.uid, e.type, e.at, e.message_id, e.channel_id, e.broadcast_id,"
                " e.recipient, e.data, m.tags, m.metadata")
FEED_JOIN = "events e LEFT JOIN messages m ON m.id = e.message_id"


class Events:
    """Read side of the event log."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def list(self, *, message_id: str | None = None, type_: str | None = None,
             since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        where, args = ["1=1"], []
        if message_id:
            where.append("message_id = ?")
            args.append(message_id)
        if type_:
            where.append("type = ?")
            args.append(type_)
        if since:
            where.append("at >= ?")
            args.append(since)
        sql = (f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?")
        rows = self.db.read(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def feed(self, *, message_id: str | None = None, recipient: str | None = None,
             types: list[str] | None = None, since: float | None = None,
             until: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Public events (SPEC §12), oldest first, as rows of ``FEED_COLUMNS``."""
        where, args = _feed_where(message_id, recipient, types, since, until)
        sql = f"SELECT {FEED_COLUMNS} FROM {FEED_JOIN} WHERE {where} ORDER BY e.id LIMIT ?"
        return [dict(r) for r in self.db.read(lambda c: c.execute(sql, (*args, limit))
                                              .fetchall())]

    def purge(self, before: float, batch: int = 5000) -> int:
        """Delete events older than ``before`` in batches (each its own short transaction)."""
        total = 0
        while True:
            n = self.db.write(lambda c: purge_in(c, before, batch))
            total += n
            if n < batch:
                return total

    def counts(self, message_id: str | None = None) -> dict[str, int]:
        """Number of events per type (optionally for one message)."""
        sql = "SELECT type, count(*) FROM events"
        args: tuple[Any, ...] = ()
        if message_id:
            sql += " WHERE message_id = ?"
            args = (message_id,)
        rows = self.db.read(lambda c: c.execute(sql + " GROUP BY type", args).fetchall())
        return {r[0]: r[1] for r in rows}
