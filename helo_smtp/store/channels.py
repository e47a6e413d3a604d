"""Channels of an account: default tracking, their own suppression list and counters."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from helo_smtp.errors import UsageError
from helo_smtp.models import Channel


def _row(r: sqlite3.Row) -> Channel:
    return Channel(r["id"], r["account_id"], r["name"], bool(r["track_opens"]),
                   bool(r["track_links"]), r["created_at"])


class Channels:
    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, account_id: str, name: str, track_opens: bool = False,
               track_links: bool = False) -> Channel:
        name = name.strip()
        if not name:
            raise UsageError("channel name must not be empty")
        ch = Channel(str(uuid.uuid4()), account_id, name, track_opens, track_links, time.time())

        def fn(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM channels WHERE account_id = ? AND name = ?",
                         (account_id, name)).fetchone():
                raise UsageError(f"channel '{name}' already exists on this account")
            c.execute("INSERT INTO channels (id, account_id, name, track_opens, track_links,"
                      " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                      (ch.id, account_id, name, int(track_opens), int(track_links),
                       ch.created_at))

        self.db.write(fn)
        return ch

    def get(self, ref: str) -> Channel | None:
        """A live channel by id, or by name when the name is unique."""
        rows = self.db.read(lambda c: c.execute(
            "SELECT * FROM channels WHERE (id = ? OR name = ?) AND deleted_at IS NULL",
            (ref, ref)).fetchall())
        if len(rows) > 1:
            raise UsageError(f"channel name '{ref}' is ambiguous; use its id")
        return _row(rows[0]) if rows else None

    def require(self, ref: str) -> Channel:
        ch = self.get(ref)
        if ch is None:
            raise UsageError(f"no channel '{ref}'")
        return ch

    def list(self, account_id: str | None = None) -> list[Channel]:
        sql, args = "SELECT * FROM channels WHERE deleted_at IS NULL", ()
        if account_id:
            sql, args = sql + " AND account_id = ?", (account_id,)
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY created_at", args).fetchall())
        return [_row(r) for r in rows]

    def update(self, channel_id: str, *, name: str | None = None,
               track_opens: bool | None = None, track_links: bool | None = None) -> Channel:
        sets, args = [], []
        for col, val in (("name", name), ("track_opens", track_opens),
                         ("track_links", track_links)):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(int(val) if isinstance(val, bool) else val)
        if sets:
            self.db.write(lambda c: c.execute(
                f"UPDATE channels SET {', '.join(sets)} WHERE id = ?", (*args, channel_id)))
        return self.require(channel_id)

    def delete(self, channel_id: str, force: bool = False) -> int:
        """Delete (soft: history stays); with ``force``, queued recipients are purged.

        Returns the number of recipients purged. Credentials scoped to it are revoked.
        """
        def fn(c: sqlite3.Connection) -> int:
            import helo_smtp.store.queue as queue  # local: queue imports channels' neighbours

            ids = [r[0] for r in c.execute(
                "SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id"
                " WHERE m.channel_id = ? AND r.state IN ('queued', 'deferred')",
                (channel_id,))]
            if ids and not force:
                raise UsageError(f"channel has {len(ids)} queued recipients; use --force")
            queue.purge_ids(c, ids, reason="channel deleted")
            now = time.time()
            c.execute("UPDATE channels SET deleted_at = ? WHERE id = ?", (now, channel_id))
            c.execute("UPDATE credentials SET revoked_at = ? WHERE channel_id = ?"
                      " AND revoked_at IS NULL", (now, channel_id))
            return len(ids)

        return self.db.write(fn)
