"""SQLite group commit: the primitives the writer thread (``db.py``) and the loop writer
(``loopwriter.py``) share, and the job queue PostgreSQL's group writer takes from too.

A write is a function ``fn(conn) -> T`` with a future. A group of them runs in one ``BEGIN
IMMEDIATE`` transaction, each inside its own SAVEPOINT, and COMMITs once: many messages share
one fsync, yet every caller is answered only after the COMMIT that holds its work is on disk
(``synchronous=FULL``). A job that raises is rolled back to its savepoint alone; a COMMIT that
fails fails every job in it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from helo_smtp.errors import StorageFull, StoreError

J = TypeVar("J")
log = logging.getLogger("helo_smtp.store")

BUSY_TIMEOUT_MS = 10_000
MAX_GROUP = 256  # jobs per COMMIT at most


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
