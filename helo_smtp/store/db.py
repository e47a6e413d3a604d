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
from helo_smtp.store.walpolicy import WAL_LIMIT_BYTES

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
    # When SQLite restarts the WAL it cuts the file back to this (store/walpolicy.py).
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
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


Job = tuple[Callable[[sqlite3.Connection], Any], Any]  # (fn, a concurrent or asyncio Future)
Done = tuple[Any, bool, Any]  # (future, ok, value or exception)


def settle(done: list[Done]) -> None:
    """Answer each job of a committed group: its value, or the exception it raised."""
    for fut, ok, value in done:
        if fut.done():  # an asyncio caller that gave up (cancelled) after its job ran
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def fail(jobs: list[Job], exc: BaseException) -> None:
    """Answer every job with the store error ``exc`` stands for."""
    for _, fut in jobs:
        fut.set_exception(translate(exc))


def run_group(conn: sqlite3.Connection, jobs: list[Job],
              committed: Callable[[list[Done]], None], begun: bool = False) -> list[Job]:
    """Run jobs in one transaction and hand the outcomes to ``committed`` after its COMMIT;
    returns the jobs to run again (none when done). ``begun``: the caller has already run
    ``BEGIN IMMEDIATE``.

    SQLite rolls the whole transaction back on its own after some errors (SQLITE_FULL,
    SQLITE_IOERR, ...). Then the job that hit it fails alone and the jobs that had already
    succeeded in this transaction are run again in a new one, so no innocent job is lost.
    """
    try:
        if not begun:
            conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:  # noqa: BLE001 - every waiting job must be answered
        fail(jobs, exc)
        return []
    done: list[tuple[Job, bool, Any]] = []
    for i, job in enumerate(jobs):
        ok, value = _run_job(conn, job[0])
        if not ok and not conn.in_transaction:
            job[1].set_exception(value)
            return [j for j, _, _ in done] + jobs[i + 1:]
        done.append((job, ok, value))
    try:
        conn.execute("COMMIT")
    except BaseException as exc:  # noqa: BLE001 - every job in the batch must be answered
        log.error("commit failed: %s", exc)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        fail([job for job, _, _ in done], exc)
        return []
    committed([(fut, ok, value) for (_, fut), ok, value in done])
    return []


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
