"""SQLite connection handling: one writer thread with group commit, reads from any thread.

Writes are functions ``fn(conn) -> T`` queued to the writer thread (after datasette's
``database.py``). The writer takes every job waiting, runs each inside its own SAVEPOINT in one
``BEGIN IMMEDIATE`` transaction and COMMITs once: many messages share one fsync, yet every caller
is answered only after the COMMIT that holds its work is on disk (``synchronous=FULL``). A job that
raises is rolled back to its savepoint alone; a COMMIT that fails fails every job in it.

Reads use a per-thread connection in WAL mode, so they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from helo_smtp.errors import StorageFull, StoreError

T = TypeVar("T")
J = TypeVar("J")
log = logging.getLogger("helo_smtp.store")

BUSY_TIMEOUT_MS = 10_000
MAX_GROUP = 256  # jobs per COMMIT at most


class CorruptDatabase(StoreError):
    """``PRAGMA integrity_check`` failed; the relay refuses to start."""


def connect(path: str) -> sqlite3.Connection:
    """A connection with the pragmas every helo-smtp connection uses."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: the WAL is fsynced at every COMMIT, so a 250 survives power loss.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def take_group(jobs: queue.SimpleQueue[J | None], limit: int) -> list[J] | None:
    """One group commit's worth of jobs: wait for one, then take every job already waiting,
    up to ``limit``. None: the stop sentinel came first. A sentinel met after the first job is
    put back, so the writer (or the next writer thread) stops on its next turn."""
    first = jobs.get()
    if first is None:
        return None
    group = [first]
    while len(group) < limit:
        try:
            nxt = jobs.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            jobs.put(None)
            break
        group.append(nxt)
    return group


def dialect(c: Any) -> str:
    """The SQL dialect of a connection handed to a store function: ``"sqlite"`` here,
    ``"postgresql"`` for the PostgreSQL store's ``PgConn`` (``store/pg.py``). Store SQL is
    written to run on both; branch on this only where the engines truly differ."""
    return getattr(c, "dialect", "sqlite")


def translate(exc: BaseException) -> BaseException:
    """Map sqlite3 failures that mean 'no room' to StorageFull, others to StoreError."""
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        if "full" in text or "disk i/o" in text or "too big" in text:
            return StorageFull("database or disk is full")
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
            return exc
        return StoreError("store write failed")
    if isinstance(exc, OSError) and exc.errno in (27, 28):  # EFBIG, ENOSPC
        return StorageFull("disk is full")
    return exc


class Database:
    """The SQLite database behind the store."""

    dialect = "sqlite"  # PgDatabase says "postgresql"
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
    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._closed:
            raise StoreError("store is closed")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction and wait for its COMMIT (sync callers)."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; resolves after its COMMIT is on disk."""
        return await asyncio.wrap_future(self.submit(fn))

    def _write_loop(self) -> None:
        while (batch := take_group(self._jobs, MAX_GROUP)) is not None:
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]
                   ) -> None:
        pending = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        while pending:
            pending = self._try_batch(pending)

    def _try_batch(self, jobs: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]
                   ) -> list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]:
        """Run jobs in one transaction; returns the jobs to run again (none when done).

        SQLite rolls the whole transaction back on its own after some errors (SQLITE_FULL,
        SQLITE_IOERR, ...). Then the job that hit it fails alone and the jobs that had already
        succeeded in this transaction are run again in a new one, so no innocent job is lost.
        """
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:  # noqa: BLE001 - every waiting job must be answered
            for _, fut in jobs:
                fut.set_exception(translate(exc))
            return []
        done: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any], bool, Any]] = []
        for i, (fn, fut) in enumerate(jobs):
            ok, value = self._run_job(conn, fn)
            if not ok and not conn.in_transaction:
                fut.set_exception(value)
                return [(f, fu) for f, fu, _, _ in done] + jobs[i + 1:]
            done.append((fn, fut, ok, value))
        try:
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - every job in the batch must be answered
            log.error("commit failed: %s", exc)
            self._rollback()
            for _, fut, _, _ in done:
                fut.set_exception(translate(exc))
            return []
        for _, fut, ok, value in done:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        return []

    @staticmethod
    def _run_job(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
                 ) -> tuple[bool, Any]:
        conn.execute("SAVEPOINT job")
        try:
            value = fn(conn)
        except BaseException as exc:  # noqa: BLE001 - rolled back and handed to the caller
            if conn.in_transaction:  # else SQLite already rolled everything back
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            return False, translate(exc)
        conn.execute("RELEASE job")
        return True, value

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute("ROLLBACK")

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
        self._jobs.put(None)
        self._thread.join(10)
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
