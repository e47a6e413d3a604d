"""Writes on the relay's loop (``store/loopwriter.py``): nobody is answered before the fsync of
the WAL, one fsync covers many commits, a write lock held by another process never blocks the
loop, and stopping answers everything queued.

The fsync is the real ``os.fdatasync``, wrapped so a test can hold it and see what waits on it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from helo_smtp.errors import StoreError
from helo_smtp.store import Database, loopwriter
from helo_smtp.store.groupcommit import connect

pytestmark = pytest.mark.sqlite_only


class HeldFsync:
    """``os.fdatasync`` that records the files it syncs and waits while ``hold`` is clear."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Semaphore(0)
        self.files: list[str] = []
        self._real = os.fdatasync

    def __call__(self, fd: int) -> None:
        self.files.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.started.release()
        assert self.hold.wait(10)
        self._real(fd)


@pytest.fixture
def fsync(monkeypatch):
    held = HeldFsync()
    monkeypatch.setattr(loopwriter.os, "fdatasync", held)
    return held


@pytest.fixture
def db(tmp_path: Path):
    d = Database(str(tmp_path / "w.db"))
    d.write(lambda c: c.execute("CREATE TABLE t (n INTEGER)"))
    yield d
    d.close()


def rows(db: Database) -> list[int]:
    return [r[0] for r in db.read(lambda c: c.execute("SELECT n FROM t ORDER BY n").fetchall())]


def insert(n: int):
    return lambda c: c.execute("INSERT INTO t VALUES (?)", (n,)).lastrowid


async def until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.005)


def test_no_answer_before_the_wal_fsync_and_one_fsync_covers_many(db, fsync):
    async def main() -> None:
        db.bind_loop(asyncio.get_running_loop())
        fsync.hold.clear()
        first = asyncio.ensure_future(db.awrite(insert(1)))
        await asyncio.to_thread(fsync.started.acquire)  # its fsync has begun, and is held
        assert rows(db) == [1]  # committed: visible to readers ...
        assert not first.done()  # ... but not answered until the fsync returns
        later = [asyncio.ensure_future(db.awrite(insert(n))) for n in range(2, 52)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in later)
        fsync.hold.set()
        assert await first == 1
        assert sorted(await asyncio.gather(*later)) == list(range(2, 52))
        db.unbind_loop()

    asyncio.run(main())
    assert rows(db) == list(range(1, 52))
    assert set(fsync.files) == {db.path + "-wal"}
    assert len(fsync.files) == 2  # the 50 writes queued behind the first fsync shared one


def test_a_write_lock_held_elsewhere_does_not_block_the_loop(db, fsync):
    other = connect(db.path)  # another process's connection, as the CLI or the delivery child

    async def main() -> None:
        loop = asyncio.get_running_loop()
        db.bind_loop(loop)
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(db.awrite(insert(7)))
        ticks = 0
        t0 = loop.time()
        while loop.time() - t0 < 0.2:  # the loop keeps turning while the lock is taken
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 10 and not write.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 5) == 1
        db.unbind_loop()

    asyncio.run(main())
    other.close()
    assert rows(db) == [7]


def test_a_lock_held_past_the_busy_timeout_fails_the_write_with_a_store_error(
        db, fsync, monkeypatch):
    monkeypatch.setattr(loopwriter, "BUSY_TIMEOUT", 0.1)
    other = connect(db.path)

    async def main() -> None:
        db.bind_loop(asyncio.get_running_loop())
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError):
            await asyncio.wait_for(db.awrite(insert(1)), 5)
        other.execute("ROLLBACK")
        assert await db.awrite(insert(2)) == 1  # the next write goes through
        db.unbind_loop()

    asyncio.run(main())
    other.close()
    assert rows(db) == [2]


def test_a_failing_job_fails_alone_and_a_cancelled_one_never_runs(db, fsync):
    async def main() -> None:
        db.bind_loop(asyncio.get_running_loop())
        good = asyncio.ensure_future(db.awrite(insert(1)))
        bad = asyncio.ensure_future(db.awrite(lambda c: c.execute("INSERT INTO nope VALUES (1)")))
        gone = asyncio.ensure_future(db.awrite(insert(99)))
        await asyncio.sleep(0)  # all three are queued for this turn
        gone.cancel()
        assert await good == 1
        with pytest.raises(StoreError):  # no such table: a store fault, the 451 kind
            await bad
        db.unbind_loop()

    asyncio.run(main())
    assert rows(db) == [1]


def test_unbind_commits_fsyncs_and_answers_what_is_queued(db, fsync):
    async def main() -> list[int]:
        db.bind_loop(asyncio.get_running_loop())
        futs = [db.submit(insert(n)) for n in range(5)]  # on the loop's thread: the loop writer
        assert not any(f.done() for f in futs)  # queued for this turn, not yet committed
        db.unbind_loop()  # the relay stopping
        assert fsync.files == [db.path + "-wal"]  # committed and fsynced right there
        return [f.result(timeout=0) for f in futs]

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    assert rows(db) == [0, 1, 2, 3, 4]
    assert db.write(insert(5)) == 6  # the writer thread carries on after unbinding


def test_sync_writes_and_other_loops_keep_the_writer_thread(db, fsync):
    async def main() -> None:
        db.bind_loop(asyncio.get_running_loop())
        # a blocking write on the bound loop's own thread goes to the thread, not the loop
        # (waiting on the loop from inside the loop would hang)
        assert db.write(insert(1)) == 1
        assert await asyncio.to_thread(db.write, insert(2)) == 2  # another thread: the thread
        db.unbind_loop()

    asyncio.run(main())
    assert fsync.files == []  # neither went through the loop writer
    assert rows(db) == [1, 2]


def test_the_wal_is_checkpointed_off_the_loop(db, fsync, monkeypatch):
    monkeypatch.setattr(loopwriter, "CHECKPOINT_EVERY", 0.0)
    before = Path(db.path).stat().st_size
    blob = os.urandom(4000)

    async def main() -> None:
        db.bind_loop(asyncio.get_running_loop())
        for _ in range(40):
            await db.awrite(lambda c: c.execute("INSERT INTO t VALUES (?)", (blob,)))
        await until(lambda: Path(db.path).stat().st_size > before + 64 * 1024)
        db.unbind_loop()

    asyncio.run(main())
    assert len(rows(db)) == 40
