"""Idempotent submission (SPEC §6): an ``X-Helo-Idempotency-Key`` seen within the hour replays
the first answer instead of queueing the message again."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from helo_smtp.errors import IdempotencyConflict
from helo_smtp.models import NewMessage

IDEMPOTENCY_WINDOW = 3600.0


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    message_id: str
    reply: str
    replayed: bool  # an idempotent replay: nothing was queued
    broadcast_id: str | None = None


def claim_idempotency(c: sqlite3.Connection, msg: NewMessage) -> EnqueueResult | None:
    """SPEC §6: same key + same fingerprint within 1 h replays; other content conflicts.

    The key row is written *first* (``ON CONFLICT DO NOTHING``), before the message. Of two
    submissions with one key at the same moment, on one node or on two sharing PostgreSQL, the
    second waits on the first's row until that transaction ends, then replays its reply (or
    conflicts); if the first rolled back, the second gets the key. A key older than the window
    is taken over by an UPDATE that re-checks the age, so of two late reusers only one wins.
    None: the key is ours (or there is none), go on and queue the message.
    """
    if not msg.idempotency_key:
        return None
    key = (msg.account_id, msg.idempotency_key)
    ours = (msg.fingerprint or "", msg.id, msg.reply, msg.created_at)
    if c.execute("INSERT INTO idempotency_keys (account_id, key, fingerprint, message_id, reply,"
                 " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, key)"
                 " DO NOTHING", (*key, *ours)).rowcount:
        return None
    if c.execute("UPDATE idempotency_keys SET fingerprint = ?, message_id = ?, reply = ?,"
                 " created_at = ? WHERE account_id = ? AND key = ? AND created_at < ?",
                 (*ours, *key, msg.created_at - IDEMPOTENCY_WINDOW)).rowcount:
        return None
    row = c.execute("SELECT fingerprint, message_id, reply FROM idempotency_keys"
                    " WHERE account_id = ? AND key = ?", key).fetchone()
    if row["fingerprint"] != (msg.fingerprint or ""):
        raise IdempotencyConflict()
    return EnqueueResult(row["message_id"], row["reply"], True)
