"""Retention (SPEC §15): drop old message bodies, then old history, in small batches.

Two ages, both counted from the moment a message's *last* recipient reached a final state (the
latest ``recipients.updated_at``), never from acceptance, and never while any recipient is
queued, deferred or held (held rows are queued or deferred):

- ``body_days``: the raw bytes go (``raw`` becomes empty, ``body_purged_at`` is set). The row,
  its recipients, attempts and events stay: ``messages show`` still answers.
- ``metadata_days``: the message, its recipients, attempts, events, engagement rows and
  idempotency key go. Broadcast counters and suppressions stay (they are aggregates and policy,
  not history).

A pass walks messages by ``(created_at, id)`` with a keyset cursor, ``batch_size`` at a time: a
read picks candidates (a message created after the cutoff cannot have finished before it), and
one short write transaction re-checks them and drops what qualifies. Between batches the pass
sleeps ``pause``, so the accept path's commits (and the claims) never queue behind it for more
than one small transaction. Every step is idempotent: nodes sharing PostgreSQL may run passes
at the same time.

Other subsystems with per-message rows (webhook deliveries, say) add their table with
``register_message_table``; it is then emptied with the message, before the message's own rows.

SQLite gives freed pages back to the file system only with ``auto_vacuum = INCREMENTAL`` (set on
new database files by ``prepare_new_file``); a pass then runs ``PRAGMA incremental_vacuum`` in
small steps. Older files reuse their free pages for new rows (the file stops growing) and shrink
once with ``helo-smtp purge --vacuum`` (``vacuum``), which rewrites the file and switches it to
incremental. PostgreSQL reclaims dead rows with autovacuum (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helo_smtp.config import RetentionConfig
from helo_smtp.store.db import dialect
from helo_smtp.store.groupcommit import connect, translate

log = logging.getLogger("helo_smtp.retention")
DAY = 86400.0
VACUUM_PAGES = 256  # pages given back per write transaction (1 MiB at 4 KiB pages)

#: (table, column naming the message): emptied, in this order, before recipients and messages.
MESSAGE_TABLES: list[tuple[str, str]] = [
    ("attempts", "message_id"),  # before recipients: attempts.recipient_id references them
    ("events", "message_id"),
    ("engagement", "message_id"),
    ("idempotency_keys", "message_id"),
]


def register_message_table(table: str, column: str = "message_id") -> None:
    """Let retention delete ``table``'s rows of a message before the message itself."""
    if (table, column) not in MESSAGE_TABLES:
        MESSAGE_TABLES.insert(0, (table, column))


@dataclass
class Report:
    """What a pass dropped (or, with ``dry_run``, would drop)."""

    dry_run: bool = False
    bodies: int = 0  # message bodies dropped
    body_bytes: int = 0
    messages: int = 0  # messages deleted with their history
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    vacuumed_pages: int = 0

    def add(self, other: Report) -> None:
        self.bodies += other.bodies
        self.body_bytes += other.body_bytes
        self.messages += other.messages
        for table, n in other.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "bodies": self.bodies, "body_bytes": self.body_bytes,
                "messages": self.messages, "rows": dict(self.rows),
                "vacuumed_pages": self.vacuumed_pages}


def _marks(ids: list[str]) -> str:
    return ",".join("?" * len(ids))


def finished_before(c: sqlite3.Connection, ids: list[str], cutoff: float) -> list[str]:
    """Of ``ids``, the messages with no live recipient whose last one became final before
    ``cutoff`` (a message without recipient rows counts from its creation)."""
    if not ids:
        return []
    rows = c.execute(
        "SELECT m.id, max(r.updated_at) AS last, max(CASE WHEN r.state IN ('queued',"
        " 'deferred') THEN 1 ELSE 0 END) AS live, m.created_at FROM messages m"
        f" LEFT JOIN recipients r ON r.message_id = m.id WHERE m.id IN ({_marks(ids)})"
        " GROUP BY m.id, m.created_at", ids).fetchall()
    return [r["id"] for r in rows
            if not r["live"] and (r["last"] if r["last"] is not None else r["created_at"])
            < cutoff]


def drop_bodies_in(c: sqlite3.Connection, ids: list[str], cutoff: float, now: float,
                   dry_run: bool) -> Report:
    """One body batch, re-checked inside the write transaction."""
    done = finished_before(c, ids, cutoff)
    rep = Report(dry_run)
    if not done:
        return rep
    where = f"id IN ({_marks(done)}) AND body_purged_at IS NULL"
    row = c.execute(f"SELECT count(*), coalesce(sum(length(raw)), 0) FROM messages"
                    f" WHERE {where}", done).fetchone()
    rep.bodies, rep.body_bytes = int(row[0]), int(row[1])
    if not dry_run:
        c.execute(f"UPDATE messages SET raw = ?, body_purged_at = ? WHERE {where}",
                  (b"", now, *done))
    return rep


def drop_messages_in(c: sqlite3.Connection, ids: list[str], cutoff: float, dry_run: bool
                     ) -> Report:
    """One metadata batch: the messages' rows in every registered table, then the messages."""
    done = finished_before(c, ids, cutoff)
    rep = Report(dry_run)
    if not done:
        return rep
    marks = _marks(done)
    for table, column in [*MESSAGE_TABLES, ("recipients", "message_id"), ("messages", "id")]:
        if dry_run:
            n = c.execute(f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})",
                          done).fetchone()[0]
        else:
            n = c.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", done).rowcount
        rep.rows[table] = int(n)
    rep.messages = rep.rows.get("messages", 0)
    return rep


# Ordered by ``created_at`` alone, so both engines walk the index in order (a second sort key
# would make SQLite sort every candidate row for each batch); ties are handled in ``_walk``.
_SCAN = ("SELECT id, created_at FROM messages WHERE {extra} created_at < ? AND created_at >= ?"
         " ORDER BY created_at LIMIT ?")


class Retention:
    """Runs passes over one store (sync: the CLI, or a thread of the relay's)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None  # SQLite: this pass's own connection

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """One write transaction. On SQLite on a connection of the pass's own with
        ``synchronous = NORMAL``: its COMMIT does not fsync while holding the write lock (the
        relay's commits wait for that lock), and a batch lost to a power cut is simply done
        again by the next pass. WAL keeps the file consistent either way."""
        if not self._sqlite():
            return self.db.write(fn)
        if self._conn is None:
            self._conn = connect(self.db.path)
            self._conn.execute("PRAGMA synchronous = NORMAL")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            value = fn(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise translate(exc) from None
        except BaseException:
            _rollback(conn)
            raise
        return value

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _scan(self, cutoff: float, since: float, limit: int, bodies: bool) -> list[Any]:
        sql = _SCAN.format(extra="body_purged_at IS NULL AND" if bodies else "")
        return self.db.read(lambda c: c.execute(sql, (cutoff, since, limit)).fetchall())

    def _walk(self, cutoff: float, batch: int, bodies: bool, step: Callable[[list[str]], Report],
              pause: float, stop: Callable[[], bool]) -> Report:
        """Keyset walk by ``created_at``: each batch starts at the last one's timestamp and
        skips the ids already handled there (``seen``), so equal timestamps are neither
        skipped nor repeated, and every read is a short index range scan."""
        total, since, seen = Report(), float("-inf"), set[str]()
        while not stop():
            limit = batch + len(seen)
            rows = self._scan(cutoff, since, limit, bodies)
            fresh = [r for r in rows if r["id"] not in seen]
            if not fresh:
                break
            last = fresh[-1]["created_at"]
            seen = {r["id"] for r in fresh if r["created_at"] == last} | (
                seen if last == since else set())
            since = last
            began = time.monotonic()
            total.add(step([r["id"] for r in fresh]))
            if len(rows) < limit:
                break
            _rest(pause, time.monotonic() - began)
        return total

    def run(self, body_days: float, metadata_days: float, *, batch: int = 100,
            pause: float = 0.0, dry_run: bool = False, now: float | None = None,
            stop: Callable[[], bool] = lambda: False) -> Report:
        """One pass: bodies older than ``body_days``, then messages older than
        ``metadata_days`` (0: that step is off). Returns what was dropped."""
        t = time.time() if now is None else now
        write = self.db.read if dry_run else self._write
        rep = Report(dry_run)
        try:
            if body_days > 0:
                cutoff = t - body_days * DAY
                rep.add(self._walk(cutoff, batch, True, lambda ids: write(
                    lambda c: drop_bodies_in(c, ids, cutoff, t, dry_run)), pause, stop))
            if metadata_days > 0:
                cutoff = t - metadata_days * DAY
                rep.add(self._walk(cutoff, batch, False, lambda ids: write(
                    lambda c: drop_messages_in(c, ids, cutoff, dry_run)), pause, stop))
            rep.dry_run = dry_run
            if not dry_run and (rep.bodies or rep.messages):
                rep.vacuumed_pages = self.give_back_space(stop, pause)
        finally:
            self._close()
        return rep

    # ---- SQLite space ------------------------------------------------------------------
    def _sqlite(self) -> bool:
        return getattr(self.db, "dialect", "sqlite") == "sqlite"

    def give_back_space(self, stop: Callable[[], bool] = lambda: False, pause: float = 0.0
                        ) -> int:
        """``PRAGMA incremental_vacuum`` in small transactions, when the file allows it."""
        if not self._sqlite():
            return 0
        freed = 0
        while not stop():
            began = time.monotonic()
            n = self._write(_incremental_vacuum_in)
            freed += n
            if n < VACUUM_PAGES:
                break
            _rest(pause, time.monotonic() - began)
        return freed

    def vacuum(self) -> dict[str, Any]:
        """SQLite: rewrite the file (VACUUM) and switch it to incremental auto-vacuum, so
        later passes give space back. Holds the write lock while it runs: run it in a quiet
        hour or with the relay stopped. PostgreSQL: nothing (see docs/operations.md)."""
        if not self._sqlite():
            return {"vacuumed": False, "reason": "PostgreSQL: autovacuum reclaims dead rows"}
        path = self.db.path
        before = Path(path).stat().st_size
        conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        try:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return {"vacuumed": True, "bytes_before": before,
                "bytes_after": Path(path).stat().st_size}


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _rest(pause: float, took: float) -> None:
    """Between two batches: ``pause``, and at least as long as the batch took, so a pass
    never takes more than half a core from the relay, however slow the machine."""
    if pause > 0:
        time.sleep(max(pause, took))


def _incremental_vacuum_in(c: sqlite3.Connection) -> int:
    """Give back up to ``VACUUM_PAGES`` free pages; returns how many. (Python's sqlite3 runs
    one step of the pragma per execute, and each step frees one page.)"""
    if dialect(c) != "sqlite" or c.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0
    free = min(int(c.execute("PRAGMA freelist_count").fetchone()[0]), VACUUM_PAGES)
    for _ in range(free):
        c.execute("PRAGMA incremental_vacuum(1)")
    return free


def prepare_new_file(path: str) -> None:
    """A new SQLite file gets ``auto_vacuum = INCREMENTAL`` (it must be set before the first
    table, and before WAL mode writes the header)."""
    p = Path(path)
    if path == ":memory:" or not p.parent.is_dir() or (p.exists() and p.stat().st_size):
        return
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


async def run_periodically(passes: Retention, cfg: RetentionConfig,
                           stopping: Callable[[], bool]) -> None:
    """The relay's background retention: a pass every ``cfg.interval`` seconds, in a thread
    (its writes go to the store's writer thread, never the event loop)."""
    while True:
        await asyncio.sleep(cfg.interval)
        try:
            rep = await asyncio.to_thread(
                passes.run, cfg.body_days, cfg.metadata_days, batch=cfg.batch_size,
                pause=cfg.pause, stop=stopping)
        except Exception as exc:  # noqa: BLE001 - retention must never take the relay down
            log.error("event=retention_failed error=%s", type(exc).__name__)
            continue
        if rep.bodies or rep.messages:
            log.info("event=retention bodies=%d body_bytes=%d messages=%d vacuumed_pages=%d",
                     rep.bodies, rep.body_bytes, rep.messages, rep.vacuumed_pages)
