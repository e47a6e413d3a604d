"""Adaptive slowdowns per (pool, destination domain), kept so ``queue stats`` can show them and
they survive a restart. The pacing maths lives in ``outbound/pacing.py``; this is only storage.

A row says: from ``slow_until`` back in time the domain was held at ``slow_factor`` of its
configured rate; after ``slow_until`` the factor doubles back every ``period`` seconds until it is
1 again (``effective_factor``), so a throttled destination is eased back in, not hit at full rate.
"""

from __future__ import annotations

import math
import sqlite3
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

#: Seconds a slowdown holds at its factor, and the step in which it doubles back afterwards.
SLOWDOWN_PERIOD = 600.0


@dataclass(frozen=True, slots=True)
class Slowdown:
    pool: str
    domain: str
    slow_until: float  # Unix time the held factor ends
    slow_factor: float  # fraction of the configured per-domain rate, 0 < f <= 1
    reason: str  # the remote reply that triggered it (already sanitised by the caller)

    def effective_factor(self, now: float, period: float = SLOWDOWN_PERIOD) -> float:
        """The factor in force at ``now``: held until ``slow_until``, then doubling per period."""
        if now < self.slow_until:
            return self.slow_factor
        steps = 1 + math.floor((now - self.slow_until) / period)
        return min(1.0, self.slow_factor * 2.0 ** min(steps, 64))

    def active(self, now: float, period: float = SLOWDOWN_PERIOD) -> bool:
        return self.effective_factor(now, period) < 1.0


def _row(r: sqlite3.Row) -> Slowdown:
    return Slowdown(r["pool"], r["domain"], r["slow_until"], r["slow_factor"], r["reason"])


def _set_in(c: sqlite3.Connection, s: Slowdown) -> None:
    c.execute(
        "INSERT INTO destinations (pool, domain, slow_until, slow_factor, reason)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (pool, domain) DO UPDATE SET"
        " slow_until = excluded.slow_until, slow_factor = excluded.slow_factor,"
        " reason = excluded.reason", (s.pool, s.domain, s.slow_until, s.slow_factor, s.reason))


class Destinations:
    """Slowdown rows. Writes are small; ``submit`` lets the event loop persist without waiting."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def set(self, s: Slowdown) -> None:
        """Store (or replace) the slowdown for (pool, domain) and wait for the COMMIT."""
        self.db.write(lambda c: _set_in(c, s))

    def submit(self, s: Slowdown) -> Future[None]:
        """Store the slowdown without blocking the caller (the pacer keeps the live copy)."""
        return self.db.submit(lambda c: _set_in(c, s))

    def get(self, pool: str, domain: str) -> Slowdown | None:
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM destinations WHERE pool = ? AND domain = ?",
            (pool, domain.lower())).fetchone())
        return _row(r) if r else None

    def list(self, pool: str | None = None, active_at: float | None = None,
             period: float = SLOWDOWN_PERIOD) -> list[Slowdown]:
        """All rows (of one pool), or with ``active_at`` only those still slowing at that time."""
        sql, args = "SELECT * FROM destinations", []
        if pool:
            sql += " WHERE pool = ?"
            args.append(pool)
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY pool, domain", args).fetchall())
        out = [_row(r) for r in rows]
        if active_at is not None:
            out = [s for s in out if s.active(active_at, period)]
        return out

    def clear(self, pool: str, domain: str | None = None) -> int:
        """Drop slowdowns (one domain, or the whole pool); returns rows removed."""
        if domain is None:
            return self.db.write(lambda c: c.execute(
                "DELETE FROM destinations WHERE pool = ?", (pool,)).rowcount)
        return self.db.write(lambda c: c.execute(
            "DELETE FROM destinations WHERE pool = ? AND domain = ?",
            (pool, domain.lower())).rowcount)

    def prune(self, now: float | None = None, period: float = SLOWDOWN_PERIOD) -> int:
        """Delete rows that no longer slow anything (factor back to 1)."""
        t = time.time() if now is None else now
        stale = [(s.pool, s.domain) for s in self.list() if not s.active(t, period)]
        if not stale:
            return 0
        return self.db.write(lambda c: sum(c.execute(
            "DELETE FROM destinations WHERE pool = ? AND domain = ?", k).rowcount
            for k in stale))
