"""The PostgreSQL claim: several nodes taking work from one queue (``queue.claim_in`` calls it
on PostgreSQL; the SQLite claim stays in ``queue.py``, where one writer makes claims take
turns anyway).

One statement locks the due rows, skipping the rows another node's claim holds locked right
now (``FOR UPDATE SKIP LOCKED``: neither waits for the other), and leases them. Under READ
COMMITTED a row that another claim leased meanwhile is re-checked against
``next_attempt_at <= now`` once its lock is released, and dropped: two nodes never lease one
recipient. ``MATERIALIZED`` keeps the locking subquery from being inlined into the UPDATE, so
it runs once, in due order, with its LIMIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def not_in(domains: Sequence[str]) -> str:
    """The claim's clause that skips ``domains`` (one placeholder each; none: empty)."""
    return f" AND domain NOT IN ({','.join('?' * len(domains))})" if domains else ""


def claim_skip_locked(c: Any, mail_type: str, limit: int, node: str, lease: float,
                      now: float, columns: str, skip: Sequence[str] = (), since: float = 0.0
                      ) -> list[Any]:
    """Lease up to ``limit`` due recipients of ``mail_type``, none at a domain in ``skip``;
    returns ``columns`` of each (``r.`` the recipient, ``m.`` its message), in no order."""
    return c.execute(
        "WITH due AS MATERIALIZED (SELECT id FROM recipients WHERE mail_type = ?"
        " AND state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= ?"
        f" AND next_attempt_at >= ?{not_in(skip)}"
        " ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)"
        " UPDATE recipients r SET claimed_by = ?, lease_until = ?, next_attempt_at = ?"
        " FROM due, messages m WHERE r.id = due.id AND m.id = r.message_id"
        f" RETURNING {columns}",
        (mail_type, now, since, *skip, limit, node, now + lease, now + lease)).fetchall()
