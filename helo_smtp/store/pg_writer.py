"""Group commit for the PostgreSQL store: a few writer threads, many jobs per transaction.

Why not one transaction per job: every message of one account updates the account's send
counter, every message and delivery of one broadcast its counters. A row lock is held until
COMMIT has flushed the WAL, so one-job transactions touching the same row take turns, each for
its last statements, its COMMIT round trip and the flush, whatever the number of nodes. Like
the SQLite writer (``db.py``), each writer thread takes every job waiting (up to
``MAX_GROUP``), runs each inside its own SAVEPOINT in one transaction and COMMITs once: a hot
row is then updated by a whole group per turn, and every caller is still answered only after
the COMMIT that holds its work.

Failures, most specific first:

* a job raises: rolled back to its savepoint alone and its caller gets the exception; a
  deadlock or serialization failure (with another writer or another node) is not the job's
  fault, so the job is run again in the next transaction, after a short jittered backoff;
* the connection dies before COMMIT is sent (server restart, network): nothing was committed,
  every job of the group is run again on a fresh pooled connection;
* COMMIT itself fails: the outcome is unknown, so no job is run again; every caller gets
  ``StoreError`` (the client retries, with its idempotency key).

``MAX_GROUP`` stays under 64: PostgreSQL caches 64 subtransactions per backend, and past that
every other session's visibility checks slow down (subtransaction overflow).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg_pool import ConnectionPool, PoolTimeout

from helo_smtp.errors import StoreError
from helo_smtp.store.groupcommit import take_group

log = logging.getLogger("helo_smtp.store.pg")

WRITERS = 4  # writer threads (connections) per node
MAX_GROUP = 32  # jobs per transaction at most (see the module text)
RETRIES = 5  # runs of one job at most
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
             pg_errors.LockNotAvailable)

Job = tuple[Callable[[Any], Any], Future[Any]]


class GroupWriter:
    """Writer threads over ``pool``; ``put(fn, future)`` queues a job. ``wrap(conn)`` makes the
    object handed to jobs; ``translate`` maps exceptions for callers; ``commit_sql(conn)``
    is the statement that ends a transaction (COMMIT, with the NOTIFYs the jobs asked for)."""

    def __init__(self, pool: ConnectionPool[Any], wrap: Callable[[Any], Any],
                 translate: Callable[[BaseException], BaseException],
                 commit_sql: Callable[[Any], Any], writers: int = WRITERS) -> None:
        self.pool = pool
        self.wrap, self.translate, self.commit_sql = wrap, translate, commit_sql
        self._jobs: queue.SimpleQueue[tuple[Job, int] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"helo-pg-writer-{i}",
                                          daemon=True) for i in range(writers)]
        for t in self._threads:
            t.start()

    def put(self, fn: Callable[[Any], Any], fut: Future[Any]) -> None:
        self._jobs.put(((fn, fut), 0))

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(30)

    # ---- the writer threads --------------------------------------------------------------
    def _loop(self) -> None:
        while (group := take_group(self._jobs, MAX_GROUP)) is not None:
            live = [(job, runs) for job, runs in group
                    if runs or job[1].set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, group: list[tuple[Job, int]]) -> None:
        """One transaction; jobs that must run again go back to the queue."""
        try:
            with self.pool.connection() as conn:
                again = self._transaction(conn, [job for job, _ in group])
        except PoolTimeout as exc:
            for (_, fut), _ in group:
                fut.set_exception(self.translate(exc))
            return
        runs = {id(job[1]): n for job, n in group}
        for job in again:
            n = runs[id(job[1])] + 1
            if n >= RETRIES:
                job[1].set_exception(StoreError("store write failed"))
                continue
            log.info("event=store_retry attempt=%d", n)
            time.sleep(random.uniform(0, 0.005 * 2 ** n))  # let the other side go first
            self._jobs.put((job, n))

    def _transaction(self, conn: psycopg.Connection[Any], jobs: list[Job]) -> list[Job]:
        """Run ``jobs`` in one transaction and answer them; returns the jobs to run again.

        One savepoint, moved past each job that succeeds (``RELEASE; SAVEPOINT`` in one round
        trip) and rolled back to when a job fails (it stays in place for the next job).
        """
        c = self.wrap(conn)
        savepoints = len(jobs) > 1
        try:
            conn.execute("BEGIN; SAVEPOINT job" if savepoints else "BEGIN")
        except psycopg.Error:
            return jobs if conn.broken else self._fail(jobs, StoreError("store write failed"))
        done: list[tuple[Future[Any], Any]] = []
        failed: list[tuple[Future[Any], BaseException]] = []
        again: list[Job] = []
        for i, (fn, fut) in enumerate(jobs):
            notices = set(c.notices)
            try:
                value = fn(c)
                if savepoints and i + 1 < len(jobs):
                    conn.execute("RELEASE SAVEPOINT job; SAVEPOINT job")
            except BaseException as exc:  # noqa: BLE001 - rolled back and handed to the caller
                if conn.broken or conn.closed or not self._undo(conn, savepoints):
                    return jobs  # nothing of this transaction was committed: run it all again
                c.notices = notices
                if isinstance(exc, RETRYABLE):
                    again.append((fn, fut))
                else:
                    failed.append((fut, exc))
                if not savepoints:
                    return self._answer([], failed, again)
                continue
            done.append((fut, value))
        try:
            conn.execute(self.commit_sql(c))
        except psycopg.Error as exc:
            log.error("event=commit_failed jobs=%d error=%s", len(done), type(exc).__name__)
            return self._answer([], [(fut, exc) for fut, _ in done] + failed, again)
        return self._answer(done, failed, again)

    @staticmethod
    def _undo(conn: psycopg.Connection[Any], savepoint: bool) -> bool:
        """Roll back the failed job: to the savepoint (which stays, for the next job), or the
        whole one-job transaction."""
        try:
            conn.execute("ROLLBACK TO SAVEPOINT job" if savepoint else "ROLLBACK")
        except psycopg.Error:
            conn.close()  # the pool replaces it
            return False
        return True

    def _answer(self, done: list[tuple[Future[Any], Any]],
                failed: list[tuple[Future[Any], BaseException]], again: list[Job]
                ) -> list[Job]:
        for fut, value in done:
            fut.set_result(value)
        for fut, exc in failed:
            fut.set_exception(self.translate(exc))
        return again

    def _fail(self, jobs: list[Job], exc: BaseException) -> list[Job]:
        for _, fut in jobs:
            fut.set_exception(exc)
        return []


def commit_sql(notices: set[tuple[str, str]]) -> pg_sql.Composable:
    """``COMMIT``, preceded by the group's NOTIFYs: one round trip (simple query protocol)."""
    parts: list[pg_sql.Composable] = [
        pg_sql.SQL("NOTIFY {}, {};").format(pg_sql.Identifier(ch), pg_sql.Literal(payload))
        for ch, payload in sorted(notices)]
    return pg_sql.Composed([*parts, pg_sql.SQL("COMMIT")])
