"""The WAL stays bounded (issue #23, ``store/walpolicy.py``): a reader that pins an old
snapshot lets the WAL grow past the limit while it lasts; once it is gone, the checkpointer
truncates the file, and it stays under the limit however many writes follow. Sizes, not
times: the checkpoint period is set to zero so every commit lets the checkpointer look."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from helo_smtp.store import Database, loopwriter, walpolicy

pytestmark = pytest.mark.sqlite_only

LIMIT = 256 * 1024
BLOB = b"x" * 32 * 1024


@pytest.fixture
def db(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(loopwriter, "CHECKPOINT_EVERY", 0.0)
    monkeypatch.setattr(walpolicy, "WAL_LIMIT_BYTES", LIMIT)
    monkeypatch.setattr(walpolicy, "TRUNCATE_EVERY", 0.0)
    d = Database(str(tmp_path / "w.db"))
    d.write(lambda c: c.execute("CREATE TABLE t (b BLOB)"))
    yield d
    d.close()


def wal(db: Database) -> int:
    return walpolicy.wal_size(db.path + "-wal")


async def write(db: Database, n: int) -> None:
    for _ in range(n):
        await db.awrite(lambda c: c.execute("INSERT INTO t VALUES (?)", (BLOB,)))
        await asyncio.sleep(0.01)  # let the checkpointer thread run between commits


async def wait_truncated(db: Database, tries: int = 200) -> int:
    """Keep writing until the checkpointer has cut the WAL under the limit (or give up)."""
    for _ in range(tries):
        if wal(db) <= LIMIT:
            break
        await write(db, 1)
    return wal(db)


def test_the_wal_is_cut_back_once_a_pinning_reader_is_gone(db):
    async def run() -> tuple[int, int, int]:
        db.bind_loop(asyncio.get_running_loop())
        reader = sqlite3.connect(db.path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds its snapshot
        await write(db, 40)  # 1.3 MB: no checkpoint can pass the reader
        grown = wal(db)
        reader.execute("COMMIT")
        reader.close()
        after = await wait_truncated(db)
        await write(db, 40)
        later = wal(db)
        db.unbind_loop()
        return grown, after, later

    grown, after, later = asyncio.run(run())
    assert grown > 4 * LIMIT
    assert after <= LIMIT
    assert later <= LIMIT + 8 * len(BLOB)  # writes since the last look, at most


def test_a_truncate_that_readers_do_not_allow_gives_up_without_blocking(db):
    """A reader holding its snapshot throughout: the truncating checkpoint gives up after its
    short busy wait, writes still commit, and no error reaches the writers."""
    async def run() -> tuple[int, int]:
        db.bind_loop(asyncio.get_running_loop())
        reader = sqlite3.connect(db.path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        await write(db, 30)
        count = db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])
        reader.execute("COMMIT")
        reader.close()
        gave_up = db._onloop._wal_policy.gave_up
        db.unbind_loop()
        return count, gave_up

    count, gave_up = asyncio.run(run())
    assert count == 30
    assert gave_up > 0
