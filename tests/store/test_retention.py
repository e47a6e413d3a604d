"""Retention (SPEC §15): bodies then history, counted from the last recipient's final state,
never touching a message with a recipient still queued, deferred or held."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

import pytest

from helo_smtp.models import DeliveryResult, MailType, NewMessage, RecipientState, uuid7
from helo_smtp.store import Store, retention
from tests.support.relay import make_tenant

DAY = 86400.0
BODY = b"Subject: x\r\n\r\n" + b"b" * 5000 + b"\r\n"


def _enqueue(store: Store, tenant, rcpts: list[str], created: float, raw: bytes = BODY) -> str:
    mid = uuid7()
    msg = NewMessage(mid, tenant.account.id, tenant.channel.id, MailType.TRANSACTIONAL,
                     tenant.sender, rcpts, [], raw, reply=f"250 2.0.0 Ok: queued as {mid}",
                     created_at=created)
    asyncio.run(store.queue.enqueue(msg))
    return mid


def _settle(store: Store, mid: str, state: RecipientState, at: float, only: str | None = None
            ) -> None:
    rows = [r for r in store.admin.recipients(mid) if only is None or r["address"] == only]
    asyncio.run(store.queue.record([
        DeliveryResult(r["id"], state, "data", "done", code=250, status="2.0.0", at=at,
                       next_attempt_at=at + 300) for r in rows]))


def _raw(store: Store, mid: str) -> bytes | None:
    row = store.db.read(lambda c: c.execute(
        "SELECT raw, body_purged_at FROM messages WHERE id = ?", (mid,)).fetchone())
    return None if row is None else bytes(row[0])


def _rows(store: Store, table: str, mid: str) -> int:
    col = "id" if table == "messages" else "message_id"
    return store.db.read(lambda c: c.execute(
        f"SELECT count(*) FROM {table} WHERE {col} = ?", (mid,)).fetchone()[0])


def test_bodies_then_metadata_never_live_mail(store):
    t = make_tenant(store)
    now = time.time()
    old = _enqueue(store, t, ["a@example.test", "b@example.test"], now - 100 * DAY)
    _settle(store, old, RecipientState.DELIVERED, now - 95 * DAY)
    body = _enqueue(store, t, ["a@example.test"], now - 40 * DAY)
    _settle(store, body, RecipientState.BOUNCED, now - 35 * DAY)
    # created long ago, but its last recipient became final 10 days ago: kept whole
    late = _enqueue(store, t, ["a@example.test"], now - 100 * DAY)
    _settle(store, late, RecipientState.DELIVERED, now - 10 * DAY)
    # one recipient final long ago, one still deferred: live, never touched
    live = _enqueue(store, t, ["a@example.test", "b@example.test"], now - 100 * DAY)
    _settle(store, live, RecipientState.DELIVERED, now - 99 * DAY, only="a@example.test")
    _settle(store, live, RecipientState.DEFERRED, now - 99 * DAY, only="b@example.test")
    held = _enqueue(store, t, ["a@example.test"], now - 100 * DAY)
    store.db.write(lambda c: c.execute("UPDATE recipients SET held = 1 WHERE message_id = ?",
                                       (held,)))

    dry = store.retention.run(30, 90, batch=2, dry_run=True, now=now)
    assert (dry.dry_run, dry.bodies, dry.body_bytes, dry.messages) == (
        True, 2, 2 * len(BODY), 1)
    assert dry.rows == {"attempts": 2, "events": 5, "engagement": 0, "idempotency_keys": 0,
                        "recipients": 2, "messages": 1}
    assert _raw(store, old) == BODY and _raw(store, body) == BODY  # nothing changed

    rep = store.retention.run(30, 90, batch=2, now=now)
    assert (rep.bodies, rep.body_bytes, rep.messages, rep.rows) == (
        dry.bodies, dry.body_bytes, dry.messages, dry.rows)
    for table in ("messages", "recipients", "attempts", "events"):
        assert _rows(store, table, old) == 0, table
    assert _raw(store, body) == b""  # body gone, history kept
    assert store.db.read(lambda c: c.execute(
        "SELECT body_purged_at FROM messages WHERE id = ?", (body,)).fetchone()[0]) == now
    assert _rows(store, "events", body) == 3 and _rows(store, "attempts", body) == 1
    for mid in (late, live, held):
        assert _raw(store, mid) == BODY
    again = store.retention.run(30, 90, batch=2, now=now)
    assert (again.bodies, again.messages) == (0, 0)


def test_batches_walk_messages_created_at_the_same_instant(store):
    t = make_tenant(store)
    now = time.time()
    mids = [_enqueue(store, t, ["a@example.test"], now - 50 * DAY) for _ in range(7)]
    for mid in mids:
        _settle(store, mid, RecipientState.DELIVERED, now - 45 * DAY)
    rep = store.retention.run(30, 0, batch=3, now=now)
    assert rep.bodies == 7 and rep.messages == 0
    assert all(_raw(store, m) == b"" for m in mids)


def test_zero_days_keeps_forever(store):
    t = make_tenant(store)
    now = time.time()
    mid = _enqueue(store, t, ["a@example.test"], now - 1000 * DAY)
    _settle(store, mid, RecipientState.DELIVERED, now - 999 * DAY)
    rep = store.retention.run(0, 0, now=now)
    assert (rep.bodies, rep.messages) == (0, 0) and _raw(store, mid) == BODY


def test_a_registered_table_is_emptied_with_its_messages(store):
    """The hook for other subsystems' per-message rows (webhook deliveries, say)."""
    t = make_tenant(store)
    now = time.time()
    mid = _enqueue(store, t, ["a@example.test"], now - 100 * DAY)
    _settle(store, mid, RecipientState.DELIVERED, now - 95 * DAY)
    store.db.write(lambda c: c.execute("CREATE TABLE hook_rows (message_id TEXT NOT NULL)"))
    store.db.write(lambda c: c.execute("INSERT INTO hook_rows VALUES (?), (?)", (mid, "other")))
    retention.register_message_table("hook_rows")
    try:
        rep = store.retention.run(30, 90, now=now)
    finally:
        retention.MESSAGE_TABLES.remove(("hook_rows", "message_id"))
    assert rep.rows["hook_rows"] == 1
    assert store.db.read(lambda c: c.execute("SELECT message_id FROM hook_rows").fetchall()
                         )[0][0] == "other"


@pytest.mark.sqlite_only
def test_sqlite_gives_space_back(tmp_path):
    path = str(tmp_path / "r.db")
    store = Store.open(path)
    try:
        assert store.db.read(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
        t = make_tenant(store)
        now = time.time()
        big = b"Subject: x\r\n\r\n" + b"z" * 200_000 + b"\r\n"
        for _ in range(20):
            mid = _enqueue(store, t, ["a@example.test"], now - 40 * DAY, raw=big)
            _settle(store, mid, RecipientState.DELIVERED, now - 35 * DAY)
        before = _checkpointed_size(path)
        rep = store.retention.run(30, 90, now=now)
        after = _checkpointed_size(path)
    finally:
        store.close()
    assert rep.bodies == 20 and rep.vacuumed_pages > 900  # 4 MB of 4 KiB pages
    assert before - after > 3_500_000


@pytest.mark.sqlite_only
def test_vacuum_switches_an_old_file_to_incremental(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")  # an existing file: auto_vacuum stays off
    conn.close()
    store = Store.open(str(path))
    try:
        assert store.db.read(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()[0]) == 0
        out = store.retention.vacuum()
    finally:
        store.close()
    assert out["vacuumed"] is True
    conn = sqlite3.connect(path)  # open connections keep the mode they started with
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    conn.close()


def _checkpointed_size(path: str) -> int:
    """The database file's size once the WAL is written back into it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()
    return os.path.getsize(path)
