"""The event log: one row per thing that happened, written in the same transaction as the change.

Types: message.received, recipient.suppressed, delivery.delivered, delivery.deferred,
delivery.bounced, message.expired, suppression.added, suppression.removed, message.opened,
link.clicked, recipient.unsubscribed, recipient.complained, queue.purged, queue.held,
queue.released, queue.retried.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any


def add(conn: sqlite3.Connection, type_: str, *, message_id: str | None = None,
        recipient: str | None = None, channel_id: str | None = None,
        broadcast_id: str | None = None, at: float | None = None, **data: Any) -> None:
    """Append one event (call inside a write transaction)."""
    conn.execute(
        "INSERT INTO events (at, type, message_id, recipient, channel_id, broadcast_id, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at or time.time(), type_, message_id, recipient, channel_id, broadcast_id,
         json.dumps(data, separators=(",", ":"), default=str)),
    )


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

    def counts(self, message_id: str | None = None) -> dict[str, int]:
        """Number of events per type (optionally for one message)."""
        sql = "SELECT type, count(*) FROM events"
        args: tuple[Any, ...] = ()
        if message_id:
            sql += " WHERE message_id = ?"
            args = (message_id,)
        rows = self.db.read(lambda c: c.execute(sql + " GROUP BY type", args).fetchall())
        return {r[0]: r[1] for r in rows}
