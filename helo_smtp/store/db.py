"""SQLite connection handling: one writer thread with group commit, reads from any thread.

Writes are functions ``fn(conn) -> T`` queued to the writer thread (after datasette's
``database.py``). The writer takes every job waiting and runs them as one group commit
(``groupcommit.py``: one ``BEGIN IMMEDIATE`` ... ``COMMIT``, a SAVEPOINT per job, every caller
answered only after the COMMIT that holds its work is on disk).

Reads use a per-thread connection in WAL mode, so they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from helo_smtp.errors import StoreError
from helo_smtp.store.groupcommit import (
    MAX_GROUP,
    Job,
    connect,
    run_group,
    settle,
    take_group,
)

T = TypeVar("T")
J = TypeVar("J")
log = logging.getLogger("helo_smtp.store")


class CorruptDatabase(StoreError):
    """``PRAGMA integrity_check`` failed; the relay refuses to start."""


def dialect(c: Any) -> str:
    """The SQL dialect of a connection handed to a store function: ``"sqlite"`` here,
    ``"postgresql"`` for the PostgreSQL store's ``PgConn`` (``store/pg.py``). Store SQL is
    written to run on both; branch on this only where the engines truly differ."""
    return getattr(c, "dialect", "sqlite")


class Database:
    """The SQLite database behind the store."""

    dialect = "sqlite"  # PgDatabase says "postgresql"
    shared = False  # one node: pacing and connection caps live in the worker
    # A point read here is a B-tree lookup in pages already in memory (tens of microseconds;
    # WAL readers never wait for the writer), cheaper than the thread hop that would carry it
    # off the event loop. PgDatabase says False: its reads are network round trips.
    reads_on_loop = True

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._jobs: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]
                                      | None] = queue.SimpleQueue()
        self._writer = connect(path)
        self._thread = threading.Thread(target=self._write_loop, name="helo-store-writer",
                                        daemon=True)
        self._closed = False
        self._onloop: Any = None  # a LoopWriter while the relay's loop is bound
        self._thread.start()

    # ---- reads ---------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on this thread's read connection, in autocommit.

        Each statement is its own read transaction and sees the latest commit, as on the
        PostgreSQL store. No BEGIN/COMMIT pair around it: that pair was 7 % of the relay's CPU
        in the benchmarks' profile, and every store read is one statement.
        """
        return fn(self.reader())

    # ---- writes --------------------------------------------------------------------------
    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on run writes submitted on ``loop``'s thread on the loop itself
        (``store/loopwriter.py``); writes from other threads keep the writer thread. The relay
        binds its loop at start and unbinds at stop."""
        from helo_smtp.store.loopwriter import LoopWriter

        if self.path != ":memory:" and self._onloop is None:
            self._onloop = LoopWriter(self.path, loop)

    def unbind_loop(self) -> None:
        """Commit and fsync what the loop has queued, answer it, and go back to the thread."""
        onloop, self._onloop = self._onloop, None
        if onloop is not None:
            onloop.close()

    def _here(self) -> Any:
        """The loop writer when called on its loop's thread, else None."""
        onloop = self._onloop
        if onloop is None:
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return onloop if running is onloop.loop else None

    def _to_writer(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``fn`` for the writer thread."""
        if self._closed:
            raise StoreError("store is closed")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        onloop = self._here()
        if onloop is None:
            return self._to_writer(fn)
        if self._closed:
            raise StoreError("store is closed")
        fut: Future[T] = Future()
        onloop.submit(fn, fut)
        return fut

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction and wait for its COMMIT (sync callers: always
        the writer thread, since waiting on the loop's own thread for the loop would hang)."""
        return self._to_writer(fn).result()

    async def awrite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; resolves after its COMMIT is on disk."""
        onloop = self._here()
        if onloop is None:
            return await asyncio.wrap_future(self._to_writer(fn))
        if self._closed:
            raise StoreError("store is closed")
        fut: asyncio.Future[T] = onloop.loop.create_future()
        onloop.submit(fn, fut)
        return await fut

    def _write_loop(self) -> None:
        while (batch := take_group(self._jobs, MAX_GROUP)) is not None:
            self._run_batch(batch)

    def _run_batch(self, batch: list[Job]) -> None:
        pending = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        while pending:
            pending = run_group(self._writer, pending, settle)

    # ---- lifecycle -----------------------------------------------------------------------
    def integrity_check(self) -> None:
        """Raise CorruptDatabase unless ``PRAGMA integrity_check`` says ok."""
        try:
            rows = self.reader().execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabase(f"{self.path}: database is corrupt ({exc}); restore from "
                                  "backup or move it aside") from None
        if [tuple(r) for r in rows] != [("ok",)]:
            raise CorruptDatabase(f"{self.path}: integrity_check failed: {rows[0][0]}; restore "
                                  "from backup or move it aside")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.unbind_loop()
        self._jobs.put(None)
        self._thread.join(10)
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
