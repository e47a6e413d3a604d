"""Broadcast entities and their counters, kept as events happen (never recomputed by scans)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from helo_smtp.models import DeliveryResult, RecipientState
from helo_smtp.store.db import dialect

COUNTERS = ("accepted", "suppressed", "delivered", "deferred", "bounced", "expired",
            "unique_opens", "unique_clicks", "unsubscribes", "complaints")


#: Add one to the JSON counter of a bounce category (the engines spell JSON differently).
_BUMP_CATEGORY = {
    "sqlite": "UPDATE broadcasts SET bounced_by_category = json_set(bounced_by_category,"
              " '$.' || ?, coalesce(json_extract(bounced_by_category, '$.' || ?), 0) + 1)"
              " WHERE id = ?",
    "postgresql": "UPDATE broadcasts SET bounced_by_category = jsonb_set("
                  "bounced_by_category::jsonb, ARRAY[?::text], to_jsonb(coalesce("
                  "(bounced_by_category::jsonb ->> ?::text)::bigint, 0) + 1))::text WHERE id = ?",
}


def upsert_in(c: sqlite3.Connection, channel_id: str, key: str, name: str, now: float) -> str:
    """The id of the broadcast for (channel, key), created on first use."""
    def find() -> Any:
        return c.execute("SELECT id FROM broadcasts WHERE channel_id = ? AND key = ?",
                         (channel_id, key)).fetchone()

    row = find()
    if row:
        return row[0]
    # Another node may create it at the same moment: the loser of that race keeps the winner's.
    c.execute("INSERT INTO broadcasts (id, channel_id, key, name, created_at)"
              " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id, key) DO NOTHING",
              (str(uuid.uuid4()), channel_id, key, name, now))
    return find()[0]


def bump_in(c: sqlite3.Connection, broadcast_id: str, **counts: int) -> None:
    sets = ", ".join(f"{k} = {k} + ?" for k in counts if k in COUNTERS)
    if sets:
        c.execute(f"UPDATE broadcasts SET {sets} WHERE id = ?",
                  (*[v for k, v in counts.items() if k in COUNTERS], broadcast_id))


def count_outcome_in(c: sqlite3.Connection, broadcast_id: str, res: DeliveryResult,
                     first: bool) -> None:
    """Count one recorded outcome. ``deferred`` counts recipients deferred at least once."""
    if res.state == RecipientState.DELIVERED:  # one statement: this runs for every delivery
        c.execute("UPDATE broadcasts SET delivered = delivered + 1,"
                  " first_sent_at = coalesce(first_sent_at, ?),"
                  " last_sent_at = CASE WHEN last_sent_at > ? THEN last_sent_at ELSE ? END"
                  " WHERE id = ?", (res.at, res.at, res.at, broadcast_id))
    elif res.state == RecipientState.DEFERRED and first:
        bump_in(c, broadcast_id, deferred=1)
    elif res.state == RecipientState.BOUNCED:
        bump_in(c, broadcast_id, bounced=1)
        cat = res.category.value if res.category else "other"
        c.execute(_BUMP_CATEGORY[dialect(c)], (cat, cat, broadcast_id))
    elif res.state == RecipientState.EXPIRED:
        bump_in(c, broadcast_id, expired=1)


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["bounced_by_category"] = json.loads(d["bounced_by_category"])
    return d


class Broadcasts:
    def __init__(self, db: Any) -> None:
        self.db = db

    def list(self, channel_id: str | None = None, since: float | None = None
             ) -> list[dict[str, Any]]:
        where, args = ["1=1"], []
        if channel_id:
            where.append("channel_id = ?")
            args.append(channel_id)
        if since:
            where.append("created_at >= ?")
            args.append(since)
        sql = f"SELECT * FROM broadcasts WHERE {' AND '.join(where)} ORDER BY created_at DESC"
        return [_row(r) for r in self.db.read(lambda c: c.execute(sql, args).fetchall())]

    def get(self, ref: str) -> dict[str, Any] | None:
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM broadcasts WHERE id = ? OR name = ? ORDER BY created_at DESC",
            (ref, ref)).fetchone())
        return _row(r) if r else None
