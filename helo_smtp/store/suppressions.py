"""Per-channel suppression lists. A suppression never expires by itself."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import helo_smtp.store.events as events
from helo_smtp.models import Suppression, SuppressionReason


def _row(r: sqlite3.Row) -> Suppression:
    return Suppression(r["channel_id"], r["address"], SuppressionReason(r["reason"]),
                       r["created_at"], r["source_message_id"])


def add_in(c: sqlite3.Connection, channel_id: str, address: str, reason: SuppressionReason,
           source_message_id: str | None = None) -> bool:
    """Add inside a write transaction; True when it was new. Records ``suppression.added``."""
    cur = c.execute(
        "INSERT INTO suppressions (channel_id, address, reason, created_at,"
        " source_message_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id, address) DO NOTHING",
        (channel_id, address.lower(), reason.value, time.time(), source_message_id))
    if cur.rowcount:
        events.add(c, "suppression.added", channel_id=channel_id, recipient=address.lower(),
                   message_id=source_message_id, reason=reason.value)
    return bool(cur.rowcount)


class Suppressions:
    def __init__(self, db: Any) -> None:
        self.db = db

    def add(self, channel_id: str, addresses: Iterable[str],
            reason: SuppressionReason = SuppressionReason.MANUAL) -> tuple[int, int]:
        """Returns (added, already present)."""
        addrs = list(dict.fromkeys(a.lower() for a in addresses))

        def fn(c: sqlite3.Connection) -> int:
            return sum(add_in(c, channel_id, a, reason) for a in addrs)

        added = self.db.write(fn)
        return added, len(addrs) - added

    def remove(self, channel_id: str, addresses: Iterable[str]) -> int:
        addrs = [a.lower() for a in addresses]

        def fn(c: sqlite3.Connection) -> int:
            n = 0
            for a in addrs:
                n += c.execute("DELETE FROM suppressions WHERE channel_id = ? AND address = ?",
                               (channel_id, a)).rowcount
                events.add(c, "suppression.removed", channel_id=channel_id, recipient=a)
            return n

        return self.db.write(fn)

    def list(self, channel_id: str, reason: SuppressionReason | None = None
             ) -> list[Suppression]:
        sql, args = "SELECT * FROM suppressions WHERE channel_id = ?", [channel_id]
        if reason:
            sql += " AND reason = ?"
            args.append(reason.value)
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY address", args).fetchall())
        return [_row(r) for r in rows]

    def filter(self, channel_id: str, addresses: Iterable[str]) -> set[str]:
        """The addresses (as given) that are suppressed on the channel."""
        addrs = list(addresses)
        if not addrs:
            return set()
        lowered = [a.lower() for a in addrs]
        marks = ",".join("?" * len(lowered))
        rows = self.db.read(lambda c: c.execute(
            f"SELECT address FROM suppressions WHERE channel_id = ? AND address IN ({marks})",
            (channel_id, *lowered)).fetchall())
        hit = {r[0] for r in rows}
        return {a for a in addrs if a.lower() in hit}
