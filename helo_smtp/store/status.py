"""Helo's message status (SPEC §2: accepted / delayed / failed), derived from the states of
the message's recipients in the transaction that changed them."""

from __future__ import annotations

import sqlite3


def refresh_status_in(c: sqlite3.Connection, message_id: str) -> None:
    """Helo status: delayed while any recipient is deferred; failed when all are final and
    none was delivered; accepted otherwise."""
    counts = {r[0]: r[1] for r in c.execute(
        "SELECT state, count(*) FROM recipients WHERE message_id = ? GROUP BY state",
        (message_id,))}
    if counts.get("deferred"):
        status = "delayed"
    elif counts.get("queued") or counts.get("delivered"):
        status = "accepted"
    else:
        status = "failed"
    c.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))
