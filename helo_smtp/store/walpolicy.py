"""The WAL's size bound: a checkpoint that truncates the file when readers allow (issue #23).

SQLite restarts the WAL from the top only when a checkpoint has copied every frame and no
reader still uses one; a passive checkpoint never waits for either, so under a steady stream
of short reads from two processes it rarely finishes and the file grows for as long as writes
come (https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files). Two measures:

* ``journal_size_limit`` (set on every connection, ``store/db.py``): whenever SQLite does
  restart the WAL, it cuts the file back to ``WAL_LIMIT_BYTES`` instead of keeping its peak.
* ``WalPolicy.bound`` (the loop writer's checkpointer calls it after each passive checkpoint):
  once the file is over ``WAL_LIMIT_BYTES``, at most every ``TRUNCATE_EVERY`` seconds, run
  ``wal_checkpoint(TRUNCATE)`` with a busy timeout of ``TRUNCATE_WAIT_MS``. TRUNCATE waits for
  the writer and for readers of old snapshots (statements of a few milliseconds here), copies
  everything and cuts the WAL to zero bytes. While it waits, writers wait too: the wait is short
  and comes at most once per ``TRUNCATE_EVERY``. A reader that stays longer (a backup, a long
  report) makes it give up (``busy``) and the next try comes later: nothing blocks for long.

The bound (docs/operations.md): the WAL stays under ``WAL_LIMIT_BYTES`` plus what is written
in ``TRUNCATE_EVERY`` seconds, as long as no read transaction lasts longer than that.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable

log = logging.getLogger("helo_smtp.store")

WAL_LIMIT_BYTES = 64 * 1024 * 1024
TRUNCATE_EVERY = 10.0  # seconds between truncating checkpoints, at most
TRUNCATE_WAIT_MS = 100  # how long one may wait for the writer and old readers


def wal_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class WalPolicy:
    """Truncates ``wal`` through ``conn`` (a connection of its own, used from one thread)."""

    def __init__(self, conn: sqlite3.Connection, wal: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conn, self.wal, self._clock = conn, wal, clock
        self._next = 0.0
        self.truncated = self.gave_up = 0

    def bound(self) -> bool:
        """Truncate the WAL if it is over the limit and a try is due; True when it was cut."""
        now = self._clock()
        if now < self._next or wal_size(self.wal) <= WAL_LIMIT_BYTES:
            return False
        self._next = now + TRUNCATE_EVERY
        self.conn.execute(f"PRAGMA busy_timeout = {TRUNCATE_WAIT_MS}")
        try:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:  # SQLITE_BUSY on the writer lock
            busy = 1
            log.debug("event=wal_truncate_busy error=%s", exc)
        if busy:
            self.gave_up += 1
            log.info("event=wal_truncate_deferred wal_bytes=%d", wal_size(self.wal))
            return False
        self.truncated += 1
        return True
