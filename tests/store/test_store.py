"""The SQLite store: migrations, integrity, group commit, idempotency race, leases, disk full."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest

from helo_smtp.errors import IdempotencyConflict, SendLimitExceeded, StorageFull
from helo_smtp.models import (
    AccountStatus,
    DeliveryResult,
    MailType,
    NewMessage,
    RecipientState,
    StoredMessage,
    uuid7,
)
from helo_smtp.store import CorruptDatabase, Store, migrate, pg_schema, schema
from helo_smtp.store.queue import Queue
from helo_smtp.store.recent import RecentMessages
from tests.support.relay import make_tenant


def message(
    tenant,
    rcpts=("a@example.test",),
    key=None,
    fp="f1",
    raw=b"Subject: x\r\n\r\nhi\r\n",
    mail_type=MailType.TRANSACTIONAL,
) -> NewMessage:
    mid = uuid7()
    return NewMessage(
        mid,
        tenant.account.id,
        tenant.channel.id,
        mail_type,
        tenant.sender,
        list(rcpts),
        [],
        raw,
        idempotency_key=key,
        fingerprint=fp,
        reply=f"250 2.0.0 Ok: queued as {mid}",
    )


def test_migrations_from_empty_and_rerun(tmp_path):
    path = str(tmp_path / "m.db")
    steps = [name for name, _ in pg_schema.MIGRATIONS]  # the same names on both backends
    assert steps[0] == "m001_initial"
    assert migrate(path) == steps
    assert migrate(path) == []
    conn = sqlite3.connect(path)
    assert schema.applied(conn) == steps
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "accounts",
        "domains",
        "channels",
        "credentials",
        "suppressions",
        "messages",
        "recipients",
        "attempts",
        "events",
        "idempotency_keys",
        "broadcasts",
    } <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError):  # STRICT: types are enforced
        conn.execute("INSERT INTO accounts VALUES ('x', 'n', 'active', 'lots', 0)")


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(CorruptDatabase, match="restore from backup"):
        Store.open(str(path))


def test_damaged_pages_fail_integrity_check(tmp_path):
    path = tmp_path / "d.db"
    s = Store.open(str(path))
    t = make_tenant(s)
    for i in range(200):
        s.accounts.create(f"filler-{i}-" + "x" * 200)
    s.close()
    data = bytearray(path.read_bytes())
    for off in range(4096 * 2 + 100, len(data) - 4096, 4096):  # scribble over btree pages
        data[off : off + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabase):
        Store.open(str(path))
    assert t.account.name == "acme"


def test_failed_job_is_rolled_back_alone(store):
    async def scenario():
        def good(name):
            return lambda c: c.execute("INSERT INTO settings (key, value) VALUES (?, 'v')", (name,))

        def bad(c):
            c.execute("INSERT INTO settings (key, value) VALUES ('bad', 'v')")
            raise RuntimeError("boom")

        return await asyncio.gather(
            store.db.awrite(good("a")),
            store.db.awrite(bad),
            store.db.awrite(good("b")),
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    assert isinstance(results[1], RuntimeError)
    assert store.settings.get("a") == "v" and store.settings.get("b") == "v"
    assert store.settings.get("bad") is None


def test_idempotency_race_gives_one_message(store):
    t = make_tenant(store)

    async def race():
        msgs = [message(t, key="k-1") for _ in range(20)]
        return await asyncio.gather(*(store.queue.enqueue(m) for m in msgs))

    results = asyncio.run(race())
    assert len({r.message_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert store.queue.accounting() == {"queued": 1}
    assert store.events.counts() == {"message.received": 1}


def test_idempotency_conflict_and_window(store):
    t = make_tenant(store)
    first = asyncio.run(store.queue.enqueue(message(t, key="k", fp="A")))
    with pytest.raises(IdempotencyConflict):
        asyncio.run(store.queue.enqueue(message(t, key="k", fp="B")))
    store.db.write(
        lambda c: c.execute("UPDATE idempotency_keys SET created_at = created_at - 3601")
    )
    again = asyncio.run(store.queue.enqueue(message(t, key="k", fp="B")))
    assert not again.replayed and again.message_id != first.message_id


def test_pending_account_send_limit(store):
    t = make_tenant(store, status=AccountStatus.PENDING)
    store.db.write(lambda c: c.execute("UPDATE accounts SET sends_used = 999"))
    with pytest.raises(SendLimitExceeded):
        asyncio.run(store.queue.enqueue(message(t, rcpts=("a@sender.test", "b@sender.test"))))
    asyncio.run(store.queue.enqueue(message(t, rcpts=("a@sender.test",))))
    assert store.accounts.require(t.account.id).sends_used == 1000


def test_lease_lapse_returns_row_without_failure(store):
    t = make_tenant(store)
    asyncio.run(store.queue.enqueue(message(t)))
    now = 1e10  # far future: everything is due
    first = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n1", 30, now=now))
    assert len(first) == 1
    assert asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n2", 30, now=now + 29)) == []
    again = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n2", 30, now=now + 31))
    assert [r.id for r in again] == [first[0].id] and again[0].attempts == 0


def test_types_do_not_share_claims(store):
    t = make_tenant(store)
    asyncio.run(store.queue.enqueue(message(t, mail_type=MailType.BROADCAST)))
    assert asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n", 30, now=1e10)) == []
    assert len(asyncio.run(store.queue.claim(MailType.BROADCAST, 10, "n", 30, now=1e10))) == 1


def test_retries_and_fresh_mail_share_one_order(store):
    t = make_tenant(store)
    asyncio.run(store.queue.enqueue(message(t, rcpts=("old@example.test",))))
    [old] = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n", 30))
    asyncio.run(
        store.queue.record(
            [
                DeliveryResult(
                    old.id,
                    RecipientState.DEFERRED,
                    "rcpt",
                    "later",
                    451,
                    "4.3.0",
                    next_attempt_at=old.created_at,
                )
            ]
        )
    )
    asyncio.run(store.queue.enqueue(message(t, rcpts=("new@example.test",))))
    got = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 1, "n", 30, now=1e10))
    assert [r.address for r in got] == ["old@example.test"]  # due first, claimed first
    got = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 1, "n", 30, now=1e10))
    assert [r.address for r in got] == ["new@example.test"]


def test_message_status_follows_recipients(store):
    t = make_tenant(store)
    res = asyncio.run(store.queue.enqueue(message(t, rcpts=("a@x.test", "b@x.test"))))
    a, b = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n", 30))

    def status():
        return store.db.read(
            lambda c: c.execute(
                "SELECT status FROM messages WHERE id = ?", (res.message_id,)
            ).fetchone()[0]
        )

    asyncio.run(
        store.queue.record(
            [DeliveryResult(a.id, RecipientState.DEFERRED, "rcpt", "x", 451, next_attempt_at=1e10)]
        )
    )
    assert status() == "delayed"
    asyncio.run(
        store.queue.record(
            [
                DeliveryResult(a.id, RecipientState.BOUNCED, "rcpt", "x", 550),
                DeliveryResult(b.id, RecipientState.BOUNCED, "rcpt", "x", 550),
            ]
        )
    )
    assert status() == "failed"
    assert store.queue.accounting() == {"bounced": 2}


@pytest.mark.sqlite_only  # page budgets are SQLite's; tests/pg covers disk full
def test_disk_full_is_storage_full_and_recovers(store):
    t = make_tenant(store)
    pages = store.db.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    store.db.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 2}"))
    big = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    with pytest.raises(StorageFull):
        asyncio.run(store.queue.enqueue(message(t, raw=big)))
    assert store.queue.accounting() == {}  # nothing half-stored
    store.db.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    asyncio.run(store.queue.enqueue(message(t, raw=big)))
    assert store.queue.accounting() == {"queued": 1}


@pytest.mark.sqlite_only  # page budgets are SQLite's; tests/pg covers disk full
def test_full_disk_in_a_group_fails_only_its_job(store):
    """SQLite rolls the whole group back on SQLITE_FULL; the innocent jobs are run again."""
    t = make_tenant(store)
    pages = store.db.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    store.db.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 8}"))
    big = b"Subject: big\r\n\r\n" + b"x" * 400_000 + b"\r\n"

    async def group():
        jobs = [store.queue.enqueue(message(t, rcpts=(f"s{i}@x.test",))) for i in range(5)]
        jobs.insert(2, store.queue.enqueue(message(t, raw=big)))
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(group())
    assert isinstance(results[2], StorageFull)
    assert sum(not isinstance(r, Exception) for r in results) == 5
    assert store.queue.accounting() == {"queued": 5}


def test_recent_messages_match_the_committed_ones(store):
    """What the queue serves from memory after enqueue is exactly what the store holds."""
    t = make_tenant(store)
    msgs = [dataclasses.replace(message(t, mail_type=kind), tags=["a", "b"], metadata={"k": "v"},
                                track_opens=True, broadcast_key="weekly", broadcast_name="Weekly")
            for kind in MailType]
    for m in msgs:
        asyncio.run(store.queue.enqueue(m))
    cold = Queue(store.db, store.queue.lifetimes)  # another queue object: nothing in memory
    for m in msgs:
        hot = store.queue.load_message(m.id)
        assert store.queue.recent.get(m.id) is hot
        assert cold.recent.get(m.id) is None
        assert hot == cold.load_message(m.id)
    assert cold.load_message(msgs[1].id).broadcast_id is not None


def test_recent_messages_stay_within_their_budget():
    recent = RecentMessages(budget=20_000)
    for i in range(10):
        recent.add(StoredMessage(str(i), "a", "c", MailType.BROADCAST, "s@x.test", b"x" * 3000,
                                 False, False, None, [], {}, 0.0))
    assert len(recent) == 6 and recent.get("9") is not None and recent.get("3") is None
    recent.add(StoredMessage("big", "a", "c", MailType.BROADCAST, "s@x.test", b"x" * 6000,
                             False, False, None, [], {}, 0.0))
    assert recent.get("big") is None  # larger than a quarter of the budget: read from disk
