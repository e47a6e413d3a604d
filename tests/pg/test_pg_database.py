"""PgDatabase: the SQLite store's interface over a psycopg pool, and its failure handling."""

from __future__ import annotations

import asyncio
import socket
import threading

import psycopg
import pytest

from helo_smtp.errors import StorageFull, StoreError
from helo_smtp.store import Store, pg_writer
from helo_smtp.store.pg import PgRow, convert


@pytest.fixture
def pg_store(pg_url):
    s = Store.open(pg_url)
    yield s
    s.close()


def _admin(pg_url):
    return psycopg.connect(pg_url, autocommit=True)


# ---- the sqlite3 surface ---------------------------------------------------------------------
@pytest.mark.parametrize(("sql", "named", "out"), [
    ("SELECT ? , ?", False, "SELECT %s , %s"),
    ("SELECT 'a?b', \"c?\" , ? -- why?\n", False, "SELECT 'a?b', \"c?\" , %s -- why?\n"),
    ("SELECT 'it''s ?', ?", False, "SELECT 'it''s ?', %s"),
    ("SELECT x FROM t WHERE y LIKE '10%' AND z = ?", False,
     "SELECT x FROM t WHERE y LIKE '10%%' AND z = %s"),
    ("SELECT :c, :c::text, 'x:y'", True, "SELECT %(c)s, %(c)s::text, 'x:y'"),
    ("SELECT ?::text", False, "SELECT %s::text"),
])
def test_placeholders_are_converted_outside_literals(sql, named, out):
    assert convert(sql, named) == out


def test_rows_answer_by_name_and_index(pg_store):
    r = pg_store.db.read(lambda c: c.execute(
        "SELECT 1 AS one, ? AS two, 'a?b' AS lit, ? AS raw", ("2", b"\x00\xff")).fetchone())
    assert isinstance(r, PgRow)
    assert (r["one"], r[0], r["two"], r["lit"], r["raw"]) == (1, 1, "2", "a?b", b"\x00\xff")
    assert dict(r) == {"one": 1, "two": "2", "lit": "a?b", "raw": b"\x00\xff"}
    assert r.keys() == ["one", "two", "lit", "raw"] and tuple(r)[:2] == (1, "2")
    with pytest.raises(IndexError):
        r["nope"]
    named = pg_store.db.read(lambda c: c.execute("SELECT :v::text AS v, :v::text AS w",
                                                 {"v": "x"}).fetchone())
    assert dict(named) == {"v": "x", "w": "x"}


def test_aggregates_come_back_as_sqlite_would(pg_store):
    """sum() of bigints is numeric in PostgreSQL (int here, as SQLite), and sum(comparison)
    counts the true ones, as in SQLite."""
    row = pg_store.db.read(lambda c: c.execute(
        "SELECT sum(x), sum(x > 1), sum(x * 0.5), sum(CASE WHEN x > 9 THEN 1 END)"
        " FROM (VALUES (1::bigint), (2), (3)) v(x)").fetchone())
    assert tuple(row) == (6, 2, 3.0, None)
    assert type(row[0]) is int


def test_nul_in_text_is_stored_not_fatal(pg_store):
    pg_store.settings.get_or_create_secret("k")
    pg_store.db.write(lambda c: c.execute("UPDATE settings SET value = ? WHERE key = 'k'",
                                          ("a\x00b",)))
    assert pg_store.settings.get("k") == "a\ufffdb"


def test_executemany_and_rowcount(pg_store):
    n = pg_store.db.write(lambda c: c.executemany(
        "INSERT INTO settings (key, value) VALUES (?, ?)", [(f"k{i}", "v") for i in range(5)]
    ).rowcount)
    assert n == 5
    assert pg_store.db.write(lambda c: c.execute(
        "DELETE FROM settings WHERE key LIKE 'k%'").rowcount) == 5


# ---- transactions and failures ---------------------------------------------------------------
def test_disk_full_is_storage_full_and_store_goes_on(pg_store):
    def full(c):
        c.execute("INSERT INTO settings (key, value) VALUES ('half', 'done')")
        c.execute("DO $$ BEGIN RAISE EXCEPTION 'no space' USING ERRCODE = 'disk_full'; END $$")

    with pytest.raises(StorageFull):
        pg_store.db.write(full)
    assert pg_store.settings.get("half") is None  # rolled back
    pg_store.settings.get_or_create_secret("after")
    assert pg_store.settings.get("after")


def test_deadlock_victim_is_run_again(pg_store, pg_url):
    """Two nodes lock two rows in opposite order: PostgreSQL kills one job, which is rerun."""
    other = Store.open(pg_url)
    pg_store.db.write(lambda c: c.executemany(
        "INSERT INTO settings (key, value) VALUES (?, '0')", [("a",), ("b",)]))
    barrier = threading.Barrier(2)
    runs = {"ab": 0, "ba": 0}

    def job(first: str, second: str):
        def fn(c):
            runs[first + second] += 1
            c.execute("SET LOCAL deadlock_timeout = '50ms'")
            c.execute("UPDATE settings SET value = value || ? WHERE key = ?", (first, first))
            if runs[first + second] == 1:
                barrier.wait(10)
            c.execute("UPDATE settings SET value = value || ? WHERE key = ?", (first, second))
        return fn

    async def both():
        return await asyncio.gather(pg_store.db.awrite(job("a", "b")),
                                    other.db.awrite(job("b", "a")))

    try:
        asyncio.run(both())
    finally:
        other.close()
    assert sum(runs.values()) >= 3  # a deadlock victim was run again
    a, b = pg_store.settings.get("a"), pg_store.settings.get("b")
    assert a == b and a in {"0ab", "0ba"}  # both jobs applied whole, one after the other


def _occupy_writers(db) -> tuple[threading.Event, list]:
    """Keep every writer thread busy in a job of its own until the event is set, so the jobs
    submitted meanwhile queue up and the next free writer takes them as one group."""
    release, futures = threading.Event(), []
    for _ in range(pg_writer.WRITERS):
        started = threading.Event()

        def hold(c, started=started):
            started.set()
            release.wait(30)

        futures.append(db.submit(hold))
        assert started.wait(10)
    return release, futures


def test_group_commit_fails_only_the_failing_job(pg_store):
    """Jobs sharing one transaction (savepoints): the one that raises is rolled back alone,
    also when PostgreSQL refused one of its statements; the others commit together."""
    def good(k):
        return lambda c: c.execute("INSERT INTO settings (key, value) VALUES (?, 'v')"
                                   " RETURNING txid_current()", (k,)).fetchone()[0]

    def bad_sql(c):
        c.execute("INSERT INTO settings (key, value) VALUES ('bad1', 'v')")
        c.execute("INSERT INTO settings (key, value) VALUES ('bad1', 'dup')")  # unique key

    def bad_python(c):
        c.execute("INSERT INTO settings (key, value) VALUES ('bad2', 'v')")
        raise RuntimeError("boom")

    release, holders = _occupy_writers(pg_store.db)
    jobs = [good(f"g{i}") for i in range(20)]
    jobs[5], jobs[12] = bad_sql, bad_python
    futures = [pg_store.db.submit(j) for j in jobs]
    release.set()
    for f in holders:
        f.result(10)
    assert isinstance(futures[5].exception(10), psycopg.IntegrityError)
    assert isinstance(futures[12].exception(10), RuntimeError)
    txids = [f.result(10) for i, f in enumerate(futures) if i not in (5, 12)]
    assert len(set(txids)) == 1  # the 18 good jobs: one transaction, one COMMIT
    keys = {r[0] for r in pg_store.db.read(lambda c: c.execute(
        "SELECT key FROM settings").fetchall())}
    assert keys == {f"g{i}" for i in range(20)} - {"g5", "g12"}


def test_one_accounts_messages_are_committed_in_groups(pg_store):
    """The account's send counter is a row every message updates: grouped, 30 messages of one
    account share a COMMIT instead of taking turns at the disk."""
    from helo_smtp.store import queue
    from tests.pg.nodeproc import new_message
    from tests.support.relay import make_tenant

    t = make_tenant(pg_store)
    release, holders = _occupy_writers(pg_store.db)
    msgs = [new_message(t.account.id, t.channel.id, [f"r{i}@example.test"]) for i in range(30)]
    futures = [pg_store.db.submit(lambda c, m=m: (queue.enqueue_in(c, m, 3600), c.execute(
        "SELECT txid_current()").fetchone()[0])[1]) for m in msgs]
    release.set()
    for f in holders:
        f.result(10)
    assert len({f.result(10) for f in futures}) == 1
    assert pg_store.accounts.require(t.account.id).sends_used == 30


def test_failure_at_commit_is_not_run_again(pg_store):
    """A deferred constraint fails at COMMIT: the outcome is the caller's, never a rerun."""
    pg_store.db.write(lambda c: c.execute(
        "CREATE TABLE once (k TEXT, CONSTRAINT once_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"))
    runs = []

    def fn(c):
        runs.append(1)
        c.execute("INSERT INTO once VALUES ('x'), ('x')")

    with pytest.raises(psycopg.IntegrityError):
        pg_store.db.write(fn)
    assert runs == [1]


def test_connections_dropped_by_the_server_are_replaced(pg_store, pg_url):
    pg_store.settings.get_or_create_secret("before")
    with _admin(pg_url) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert killed >= 1
    pg_store.db.write(lambda c: c.execute(
        "INSERT INTO settings (key, value) VALUES ('after', 'yes')"))
    assert pg_store.settings.get("after") == "yes"
    assert pg_store.settings.get("before")


def test_unreachable_server_is_a_store_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at .*127\.0\.0\.1"):
        Store.open(f"postgresql://helo:secret@127.0.0.1:{port}/helo")


def test_password_is_not_in_the_error():
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://helo:hunter2@127.0.0.1:1/helo")
    assert "hunter2" not in str(info.value)


def test_closed_store_refuses_writes(pg_url):
    s = Store.open(pg_url)
    s.close()
    with pytest.raises(StoreError):
        s.db.write(lambda c: c.execute("SELECT 1"))
