"""Pacing and connection caps shared by every node on one database (no Redis).

``outbound/pacing.py`` keeps token buckets and connection caps in memory: right for one node.
With several nodes on PostgreSQL, a per-domain rate of 5/s would become 5/s *per node*; these
are the same two primitives kept in the database, so the limits hold for the whole cluster.
They work on SQLite too (one node), so the worker can call them whatever the backend.

Token buckets (``rate_buckets``) use GCRA, the "virtual scheduling" form of a token bucket: one
number per bucket, ``tat``, the time at which the bucket would be full again. Taking ``n``
tokens from a bucket of ``rate`` tokens/s and capacity ``C`` is allowed when
``tat <= now + (C - n) / rate`` and moves ``tat`` to ``max(tat, now) + n / rate``. That is one
``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING``: atomic on both engines, and two
nodes taking from one bucket queue on its row lock. The contract is ``Pacer.delay``'s: 0.0 means
the tokens were taken, a positive value is how long to wait, and then nothing was taken.

Connection slots (``connection_slots``) are numbered 0 .. cap-1 per (pool, domain) and leased
like queue rows: a node that dies holding slots frees them when their lease lapses.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import Future
from typing import Any

POOL_KEY = ""  # the bucket of the whole pool is stored under an empty domain
SLOT_ATTEMPTS = 3  # a slot another node took between our look and our insert: look again

_TAKE = (
    "INSERT INTO rate_buckets (pool, domain, tat) VALUES (?, ?, ?)"
    " ON CONFLICT (pool, domain) DO UPDATE SET tat = CASE WHEN rate_buckets.tat > ?"
    " THEN rate_buckets.tat ELSE ? END + ? WHERE rate_buckets.tat <= ? RETURNING tat")

_ACQUIRE = (
    "WITH RECURSIVE n(slot) AS (SELECT 0 UNION ALL SELECT slot + 1 FROM n WHERE slot + 1 < ?)"
    " INSERT INTO connection_slots (pool, domain, slot, holder, lease_until)"
    " SELECT ?, ?, slot, ?, ? FROM n WHERE slot NOT IN (SELECT slot FROM connection_slots"
    " WHERE pool = ? AND domain = ? AND lease_until > ?) ORDER BY slot LIMIT 1"
    " ON CONFLICT (pool, domain, slot) DO UPDATE SET holder = excluded.holder,"
    " lease_until = excluded.lease_until WHERE connection_slots.lease_until <= ?"
    " RETURNING slot")


def capacity(rate: float) -> float:
    """One second's worth of tokens, at least one message (as ``outbound/pacing.py``)."""
    return max(1.0, rate)


def take_in(c: sqlite3.Connection, pool: str, domain: str, rate: float, n: float,
            now: float) -> float:
    """Take ``n`` tokens from one bucket: 0.0 when taken, else seconds until they could be.

    More than the capacity may be taken from a full bucket (it goes into debt), so a large
    batch is never refused forever. ``rate <= 0``: unpaced, always 0.0.
    """
    if rate <= 0:
        return 0.0
    cap = capacity(rate)
    need = min(n, cap)
    limit = now + (cap - need) / rate  # the latest tat that still has ``need`` tokens now
    if c.execute(_TAKE, (pool, domain, now + n / rate, now, now, n / rate, limit)).fetchall():
        return 0.0
    row = c.execute("SELECT tat FROM rate_buckets WHERE pool = ? AND domain = ?",
                    (pool, domain)).fetchone()
    return max(row[0] - limit, 1e-6)


def _give_back_in(c: sqlite3.Connection, pool: str, domain: str, rate: float, n: float
                  ) -> None:
    c.execute("UPDATE rate_buckets SET tat = tat - ? WHERE pool = ? AND domain = ?",
              (n / rate, pool, domain))


def take_pair_in(c: sqlite3.Connection, pool: str, domain: str, n: float, pool_rate: float,
                 domain_rate: float, now: float) -> float:
    """Both buckets or neither: the domain's and then the pool's (given back if the pool's
    says wait; the row lock is still ours, so the give-back is exact)."""
    wait = take_in(c, pool, domain.lower(), domain_rate, n, now)
    if wait > 0:
        return wait
    wait = take_in(c, pool, POOL_KEY, pool_rate, n, now)
    if wait > 0 and domain_rate > 0:
        _give_back_in(c, pool, domain.lower(), domain_rate, n)
    return wait


def acquire_slot_in(c: sqlite3.Connection, pool: str, domain: str, cap: int, holder: str,
                    lease: float, now: float) -> int | None:
    """Lease a free connection slot (0 .. cap-1) for ``domain``; None when all are in use."""
    args = (cap, pool, domain, holder, now + lease, pool, domain, now, now)
    for _ in range(SLOT_ATTEMPTS):
        rows = c.execute(_ACQUIRE, args).fetchall()
        if rows:
            return int(rows[0][0])
        used = c.execute("SELECT count(*) FROM connection_slots WHERE pool = ? AND domain = ?"
                         " AND lease_until > ?", (pool, domain, now)).fetchone()[0]
        if used >= cap:
            return None
    return None


class Throttle:
    """The shared buckets and slots. Writes wait for their COMMIT (async: off the loop)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def take(self, pool: str, domain: str, n: int = 1, *, pool_rate: float,
                   domain_rate: float, now: float | None = None) -> float:
        """``Pacer.delay`` for the whole cluster: 0.0 -> ``n`` messages to ``domain`` may go
        now (tokens taken from both buckets); > 0 -> seconds to wait, nothing taken."""
        if pool_rate <= 0 and domain_rate <= 0:
            return 0.0
        t = time.time() if now is None else now
        return await self.db.awrite(lambda c: take_pair_in(c, pool, domain, n, pool_rate,
                                                           domain_rate, t))

    async def give_back(self, pool: str, domain: str, n: int = 1, *, pool_rate: float,
                        domain_rate: float) -> None:
        """Undo a ``take`` whose messages did not go (no connection slot was free)."""
        def undo(c: sqlite3.Connection) -> None:
            for key, rate in ((domain.lower(), domain_rate), (POOL_KEY, pool_rate)):
                if rate > 0:
                    _give_back_in(c, pool, key, rate, n)
        await self.db.awrite(undo)

    async def acquire_slot(self, pool: str, domain: str, cap: int, holder: str,
                           lease: float, now: float | None = None) -> int | None:
        """A connection slot to ``domain`` for ``holder`` (a node id) for ``lease`` seconds;
        None when ``cap`` are held by live leases. ``cap <= 0``: no cap (-1, nothing stored)."""
        if cap <= 0:
            return -1
        t = time.time() if now is None else now
        return await self.db.awrite(lambda c: acquire_slot_in(c, pool, domain.lower(), cap,
                                                              holder, lease, t))

    async def renew_slot(self, pool: str, domain: str, slot: int, holder: str,
                         lease: float, now: float | None = None) -> bool:
        """Extend a slot still held by ``holder``; False when it lapsed and was taken."""
        if slot < 0:
            return True
        t = time.time() if now is None else now
        return bool(await self.db.awrite(lambda c: c.execute(
            "UPDATE connection_slots SET lease_until = ? WHERE pool = ? AND domain = ?"
            " AND slot = ? AND holder = ?", (t + lease, pool, domain.lower(), slot,
                                             holder)).rowcount))

    async def release_slot(self, pool: str, domain: str, slot: int, holder: str) -> None:
        if slot >= 0:
            await self.db.awrite(lambda c: c.execute(
                "DELETE FROM connection_slots WHERE pool = ? AND domain = ? AND slot = ?"
                " AND holder = ?", (pool, domain.lower(), slot, holder)))

    def release_slot_later(self, pool: str, domain: str, slot: int, holder: str
                           ) -> Future[Any]:
        """``release_slot`` from synchronous code (a connection's close): not awaited."""
        return self.db.submit(lambda c: c.execute(
            "DELETE FROM connection_slots WHERE pool = ? AND domain = ? AND slot = ?"
            " AND holder = ?", (pool, domain.lower(), slot, holder)))

    async def renew_slots(self, pool: str, slots: list[tuple[str, int]], holder: str,
                          lease: float, now: float | None = None) -> None:
        """Extend the leases of the (domain, slot) pairs ``holder`` holds, in one write."""
        if not slots:
            return
        until = (time.time() if now is None else now) + lease
        await self.db.awrite(lambda c: c.executemany(
            "UPDATE connection_slots SET lease_until = ? WHERE pool = ? AND domain = ?"
            " AND slot = ? AND holder = ?",
            [(until, pool, d.lower(), n, holder) for d, n in slots]))

    def release_holder(self, holder: str) -> int:
        """At start: slots a previous process of this node held are void."""
        return self.db.write(lambda c: c.execute(
            "DELETE FROM connection_slots WHERE holder = ?", (holder,)).rowcount)

    def in_use(self, pool: str, domain: str, now: float | None = None) -> int:
        t = time.time() if now is None else now
        return self.db.read(lambda c: c.execute(
            "SELECT count(*) FROM connection_slots WHERE pool = ? AND domain = ?"
            " AND lease_until > ?", (pool, domain.lower(), t)).fetchone()[0])

    def held_by_others(self, pool: str, domain: str, holder: str,
                       now: float | None = None) -> int:
        """Live slots of ``domain`` that holders other than ``holder`` have."""
        t = time.time() if now is None else now
        return self.db.read(lambda c: c.execute(
            "SELECT count(*) FROM connection_slots WHERE pool = ? AND domain = ?"
            " AND lease_until > ? AND holder <> ?", (pool, domain.lower(), t, holder)
        ).fetchone()[0])

    def prune(self, now: float | None = None) -> int:
        """Forget full buckets (their state is the default) and lapsed slots."""
        t = time.time() if now is None else now
        return self.db.write(lambda c: c.execute(
            "DELETE FROM rate_buckets WHERE tat <= ?", (t,)).rowcount + c.execute(
            "DELETE FROM connection_slots WHERE lease_until <= ?", (t,)).rowcount)
