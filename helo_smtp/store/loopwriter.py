"""Store writes run on the relay's event loop; only the fsync leaves it.

The writer thread (``store/db.py``) pays a GIL hand-off for every SQLite statement: each
``sqlite3_step`` lets go of the GIL and the thread then waits for the busy event loop to give it
back. In the benchmarks that thread was 90 % busy, most of it waiting, and a 250 waited a median
25 ms for its COMMIT. A write transaction in WAL mode without its fsync costs tens of
microseconds of page-cache writes, so here it runs right on the loop:

* Jobs submitted in one turn of the loop share one ``BEGIN IMMEDIATE ... COMMIT`` (each inside
  its own SAVEPOINT, as on the thread: ``db.run_group``).
* The connection runs with ``synchronous=NORMAL``: its COMMIT writes the WAL frames but does not
  fsync. One ``fdatasync`` of the WAL file, on a thread of its own, then covers every
  transaction committed before it began (group commit); only then are the callers answered.
  Until then nobody has been told the mail is safe, so a crash in that window loses only
  messages that never got their 250. With that fsync this is as durable as ``FULL``: the WAL
  holds every committed frame, and a checkpoint (which fsyncs the WAL before and the database
  after copying, https://www.sqlite.org/wal.html#ckpt) is the only thing that moves them.
* Automatic checkpoints are off on this connection (they would fsync on the loop); a second
  thread runs ``wal_checkpoint(PASSIVE)`` on its own connection at most every
  ``CHECKPOINT_EVERY`` seconds while writes come in, without blocking writers. (Not by WAL
  size: once grown, the file keeps its size when SQLite starts writing it from the top again,
  so its size says nothing about what still needs copying.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from helo_smtp.errors import StoreError
from helo_smtp.store.groupcommit import (
    BUSY_TIMEOUT_MS,
    Done,
    Job,
    connect,
    fail,
    run_group,
    settle,
    translate,
)

log = logging.getLogger("helo_smtp.store")

CHECKPOINT_EVERY = 1.0  # seconds; under full load the WAL grows a few MiB in that time
BUSY_TIMEOUT = BUSY_TIMEOUT_MS / 1000  # then the jobs fail (451), as on the writer thread
BUSY_RETRY = 0.001  # seconds between tries while another process holds the write lock


class LoopWriter:
    """Runs write jobs on ``loop``; answers them once their COMMIT is fsynced."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._wal = path + "-wal"
        self._conn = connect(path)
        self._conn.execute("PRAGMA busy_timeout = 0")  # never sleep on the loop: see _begin
        # The fsync is ours (below), after the COMMIT and before anyone is answered.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpointer = connect(path)
        self._checkpointer.execute("PRAGMA synchronous = NORMAL")  # a checkpoint still syncs
        self._batch: list[Job] = []  # submitted this turn
        self._ready: list[Job] = []  # claimed, waiting for the write lock
        self._busy_since: float | None = None  # first BUSY of the current wait
        self._flush_scheduled = False
        self._unsynced: list[Done] = []  # committed, waiting for the next fsync
        self._syncing: list[Done] | None = None  # covered by the fsync in flight
        self._checkpointing = False
        self._last_checkpoint = loop.time()
        self._closed = False
        self._fsync_pool = ThreadPoolExecutor(1, thread_name_prefix="helo-store-fsync")
        self._ckpt_pool = ThreadPoolExecutor(1, thread_name_prefix="helo-store-checkpoint")

    def submit(self, fn: Callable[[sqlite3.Connection], Any], fut: Any) -> None:
        """Queue ``fn`` for this turn's transaction; ``fut`` (asyncio or concurrent) gets its
        value once the COMMIT holding it is on disk. Call on the loop's thread."""
        self._batch.append((fn, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    # ---- commit on the loop --------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_scheduled = False
        self._ready += [job for job in self._batch if _claim(job[1])]
        self._batch = []
        while self._ready:
            if not self._begin():
                return
            jobs, self._ready = self._ready, []
            self._ready = run_group(self._conn, jobs, self._unsynced.extend, begun=True)
        self._start_sync()

    def _begin(self) -> bool:
        """BEGIN IMMEDIATE without blocking the loop: while another process (the delivery
        child, the CLI) holds the write lock, try again on the next turns of the loop instead
        of sleeping in SQLite's busy handler. False: not begun (a retry is scheduled, or the
        jobs were answered with the error)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            now = self.loop.time()
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or (
                    self._busy_since is not None and now - self._busy_since > BUSY_TIMEOUT):
                self._busy_since = None
                fail(self._ready, exc)
                self._ready = []
                return False
            self._flush_scheduled = True
            # Once on the next turn (the holder's transaction takes ~100 us), then every
            # millisecond: spinning burned a tenth of the delivery process's CPU in the
            # benchmarks, CPU the lock holder itself was short of.
            if self._busy_since is None:
                self._busy_since = now
                self.loop.call_soon(self._flush)
            else:
                self.loop.call_later(BUSY_RETRY, self._flush)
            return False
        self._busy_since = None
        return True

    # ---- fsync off the loop --------------------------------------------------------------
    def _start_sync(self) -> None:
        if self._closed or self._syncing is not None or not self._unsynced:
            return
        group, self._unsynced = self._unsynced, []
        self._syncing = group
        done = self.loop.run_in_executor(self._fsync_pool, self._fsync)
        done.add_done_callback(self._synced)

    def _synced(self, done: asyncio.Future[None]) -> None:
        if self._closed:  # close() answered this group already
            return
        group, self._syncing = self._syncing or [], None
        _answer(group, done.exception())
        self._start_sync()
        self._maybe_checkpoint()

    def _fsync(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: the database file holds it all
            return
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    # ---- checkpoints ---------------------------------------------------------------------
    def _maybe_checkpoint(self) -> None:
        now = self.loop.time()
        if self._checkpointing or now - self._last_checkpoint < CHECKPOINT_EVERY:
            return
        self._checkpointing = True
        self._last_checkpoint = now
        done = self.loop.run_in_executor(self._ckpt_pool, self._checkpoint)
        done.add_done_callback(self._checkpointed)

    def _checkpoint(self) -> None:
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled() and done.exception() is not None:
            log.warning("event=checkpoint_failed error=%s", done.exception())

    # ---- shutdown ------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, fsync it here, answer everyone and release the connections.
        Called on the loop's thread when the relay stops; the store goes on with its writer
        thread."""
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # may block now
        self._closed = True  # from here the fsync below is the only one
        self._flush()
        if self._ready:  # the write lock stayed taken for the whole busy timeout
            fail(self._ready, StoreError("database is locked"))
            self._ready = []
        self._fsync_pool.shutdown(wait=True)  # the fsync in flight, if any, ends first
        self._ckpt_pool.shutdown(wait=True)
        waiting = (self._syncing or []) + self._unsynced
        self._syncing, self._unsynced = None, []
        if waiting:
            try:
                self._fsync()
            except OSError as exc:
                _answer(waiting, exc)
            else:
                _answer(waiting, None)
        for conn in (self._conn, self._checkpointer):
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _claim(fut: Any) -> bool:
    """False for a job whose caller gave up before it ran (it is then skipped)."""
    if isinstance(fut, Future):
        return fut.set_running_or_notify_cancel()
    return not fut.cancelled()


def _answer(group: list[Done], exc: BaseException | None) -> None:
    if exc is None:
        settle(group)
        return
    log.error("event=fsync_failed error=%s", exc)
    failure = translate(exc)
    if not isinstance(failure, StoreError):  # EIO and the like: our fault, a 451 not a 5xx
        failure = StoreError("store fsync failed")
    settle([(fut, False, failure) for fut, _, _ in group])
