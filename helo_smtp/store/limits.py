"""Send limits per channel (SPEC §15): ``hourly_limit`` and ``daily_limit`` recipient-sends.

The counters live in the database (``send_counters``), one row per (scope, period) holding the
start of the current window and its count, so every node on one PostgreSQL database charges the
same row: the ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` takes its row lock, nodes take
turns, and the count returned is the cluster-wide one. Windows are fixed and aligned to UTC
(the hour, the day), as Postmark's and Postal's are; a new window starts the count again.

``charge_in`` runs inside the accept transaction (``queue.enqueue_in``): add, then check. Past
a limit it raises ``RateLimited``, which rolls the addition back with the whole message, so the
client gets ``451 4.7.1`` and nothing is kept (it retries later; nothing accepted is dropped).
The scope is a string (``channel:<id>``) so per-credential or per-API-key limits can charge a
second scope in the same call later.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from helo_smtp.errors import RateLimited, UsageError

PERIODS = {"hour": 3600.0, "day": 86400.0}
COLUMNS = {"hour": "hourly_limit", "day": "daily_limit"}

_CHARGE = (
    "INSERT INTO send_counters (scope, period, start, count) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (scope, period) DO UPDATE SET count = CASE"
    " WHEN send_counters.start = excluded.start THEN send_counters.count + excluded.count"
    " ELSE excluded.count END, start = excluded.start RETURNING count")


def window_start(period: str, now: float) -> float:
    """Start of the UTC hour or day holding ``now``."""
    size = PERIODS[period]
    return float(int(now // size) * size)


def scope_of(channel_id: str) -> str:
    return f"channel:{channel_id}"


def charge_in(c: sqlite3.Connection, channel_id: str, n: int, now: float) -> None:
    """Count ``n`` recipient-sends against the channel's limits; ``RateLimited`` past one."""
    row = c.execute("SELECT hourly_limit, daily_limit FROM channels WHERE id = ?",
                    (channel_id,)).fetchone()
    if row is None or (row["hourly_limit"] is None and row["daily_limit"] is None) or n <= 0:
        return
    # Imported here: the store is imported by every CLI command, and prometheus_client must
    # not be loaded before serve points it at its multiprocess directory (runtime metrics).
    from helo_smtp.runtime import metrics

    for period, column in COLUMNS.items():
        limit = row[column]
        if limit is None:
            continue
        [used] = c.execute(_CHARGE, (scope_of(channel_id), period, window_start(period, now),
                                     n)).fetchone()
        metrics.SEND_LIMIT.labels(channel_id, period).set(limit)
        if used > limit:
            metrics.SEND_LIMIT_USED.labels(channel_id, period).set(used - n)
            metrics.SEND_LIMIT_REFUSED.labels(channel_id, period).inc()
            refused = RateLimited()
            # for the HTTP API's 429 Retry-After (SPEC §11/§15): when this window ends
            refused.retry_after = window_start(period, now) + PERIODS[period] - now
            raise refused
        metrics.SEND_LIMIT_USED.labels(channel_id, period).set(used)


@dataclass(frozen=True, slots=True)
class Usage:
    period: str
    limit: int | None
    used: int
    resets_at: float


class Limits:
    """Setting and reading a channel's limits (the CLI)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def set(self, channel_id: str, *, hourly: int | None = None, daily: int | None = None
            ) -> None:
        """Set limits; a value of 0 clears that limit (no limit), None leaves it as it is."""
        sets, args = [], []
        for column, value in (("hourly_limit", hourly), ("daily_limit", daily)):
            if value is None:
                continue
            if value < 0:
                raise UsageError(f"{column} must not be negative")
            sets.append(f"{column} = ?")
            args.append(value or None)
        if sets:
            self.db.write(lambda c: c.execute(
                f"UPDATE channels SET {', '.join(sets)} WHERE id = ?", (*args, channel_id)))

    def usage(self, channel_id: str, now: float | None = None) -> list[Usage]:
        """The limit and the use of the current window, per period."""
        t = time.time() if now is None else now

        def fn(c: sqlite3.Connection) -> list[Usage]:
            row = c.execute("SELECT hourly_limit, daily_limit FROM channels WHERE id = ?",
                            (channel_id,)).fetchone()
            counts = {r["period"]: (r["start"], r["count"]) for r in c.execute(
                "SELECT period, start, count FROM send_counters WHERE scope = ?",
                (scope_of(channel_id),))}
            out = []
            for period, column in COLUMNS.items():
                start = window_start(period, t)
                got = counts.get(period)
                used = got[1] if got and got[0] == start else 0
                out.append(Usage(period, row[column] if row else None, used,
                                 start + PERIODS[period]))
            return out

        return self.db.read(fn)
