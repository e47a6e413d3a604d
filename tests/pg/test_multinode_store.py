"""Several nodes on one PostgreSQL queue, each in its own process: claims never overlap, a dead
node's work comes back, and one idempotency key gives one message."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time

import pytest

from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.pg import nodeproc
from tests.support.relay import make_tenant
from tests.support.waiting import wait_for

CTX = multiprocessing.get_context("spawn")


@pytest.fixture
def pg_store(pg_url):
    s = Store.open(pg_url)
    yield s
    s.close()


def _fill(store: Store, n: int) -> set[int]:
    """Queue ``n`` recipients (50 per message); returns their ids."""
    t = make_tenant(store)

    async def go():
        await asyncio.gather(*(store.queue.enqueue(nodeproc.new_message(
            t.account.id, t.channel.id, [f"r{i}-{j}@example.test" for j in range(50)]))
            for i in range(n // 50)))
    asyncio.run(go())
    return {r[0] for r in store.db.read(lambda c: c.execute(
        "SELECT id FROM recipients").fetchall())}


def _results(out, n: int, timeout: float = 60) -> list:
    got = []
    for _ in range(n):
        status, value = out.get(timeout=timeout)
        assert status == "ok", value
        got.append(value)
    return got


def _run(target, argsets: list[tuple]) -> list:
    out = CTX.Queue()
    procs = [CTX.Process(target=target, args=(*a, out), daemon=True) for a in argsets]
    for p in procs:
        p.start()
    try:
        return _results(out, len(procs))
    finally:
        for p in procs:
            p.join(10)


def test_two_processes_never_claim_the_same_recipient(pg_store, pg_url):
    ids = _fill(pg_store, 2000)
    barrier = CTX.Barrier(2)
    got = dict(_run(nodeproc.claim_all, [(pg_url, "node-a", 7, barrier),
                                         (pg_url, "node-b", 7, barrier)]))
    a, b = got["node-a"], got["node-b"]
    assert not set(a) & set(b)
    assert len(a) + len(b) == len(ids) and set(a) | set(b) == ids
    assert a and b  # both really took part
    owners = dict(pg_store.db.read(lambda c: c.execute(
        "SELECT claimed_by, count(*) FROM recipients GROUP BY claimed_by").fetchall()))
    assert owners == {"node-a": len(a), "node-b": len(b)}


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)


def _unlocked(store: Store) -> int:
    """Pending rows no transaction holds locked right now (their locks taken and given back
    within one autocommit statement)."""
    return store.db.read(lambda c: c.execute(
        "SELECT count(*) FROM (SELECT id FROM recipients WHERE state IN ('queued', 'deferred')"
        " FOR UPDATE SKIP LOCKED) t").fetchone()[0])


def test_node_killed_inside_its_claim_leaves_nothing_locked(pg_store, pg_url):
    """While the claim's transaction is open its rows are locked and skipped by other nodes;
    when the node dies the server rolls it back and the rows are due at once."""
    ids = _fill(pg_store, 100)
    out = CTX.Queue()
    proc = CTX.Process(target=nodeproc.claim_and_die, args=(pg_url, "doomed", False, out),
                       daemon=True)
    proc.start()
    try:
        assert _results(out, 1) == [len(ids)]
        assert asyncio.run(pg_store.queue.claim(MailType.TRANSACTIONAL, 500, "other", 60)) == []
    finally:
        _kill(proc)
    # Not "the first claim that gets rows": a claim running while the server rolls the dead
    # node's transaction back skips the rows it reaches before the rollback ends and takes
    # the rest (SKIP LOCKED looks at each row once), so it may get only some of them.
    wait_for(lambda: _unlocked(pg_store) == len(ids), timeout=20, what="rows unlocked")
    rows = asyncio.run(pg_store.queue.claim(MailType.TRANSACTIONAL, 500, "other", 60))
    assert {r.id for r in rows} == ids and {r.attempts for r in rows} == {0}


def test_dead_nodes_leases_are_taken_over_when_they_lapse(pg_store, pg_url):
    ids = _fill(pg_store, 100)
    out = CTX.Queue()
    proc = CTX.Process(target=nodeproc.claim_and_die, args=(pg_url, "doomed", True, out),
                       daemon=True)
    proc.start()
    try:
        assert _results(out, 1) == [len(ids)]
    finally:
        _kill(proc)  # SIGKILL mid-delivery: its leases stay behind
    now = time.time()
    assert asyncio.run(pg_store.queue.claim(MailType.TRANSACTIONAL, 500, "heir", 60,
                                            now=now + 30)) == []  # lease still running
    rows = asyncio.run(pg_store.queue.claim(MailType.TRANSACTIONAL, 500, "heir", 60,
                                            now=now + 61))
    assert {r.id for r in rows} == ids
    assert {r.attempts for r in rows} == {0}  # a lapsed lease is not a failed attempt
    assert pg_store.queue.accounting() == {"queued": len(ids)}


def test_one_key_on_two_nodes_at_once_gives_one_message(pg_store, pg_url):
    t = make_tenant(pg_store)
    keys = [f"key-{i}" for i in range(40)]
    barrier = CTX.Barrier(2)
    a, b = _run(nodeproc.submit_keys, [
        (pg_url, t.account.id, t.channel.id, keys, "same", barrier),
        (pg_url, t.account.id, t.channel.id, keys, "same", barrier)])
    by_key: dict[str, list] = {}
    for key, mid, replayed in a + b:
        by_key.setdefault(key, []).append((mid, replayed))
    for key, answers in by_key.items():
        assert len({mid for mid, _ in answers}) == 1, key  # both nodes answer the same id
        assert sorted(r for _, r in answers) == [False, True], key  # one queued, one replayed
    assert pg_store.db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0]
                            ) == len(keys)
    assert pg_store.queue.accounting() == {"queued": len(keys)}
    assert pg_store.events.counts() == {"message.received": len(keys)}


def test_one_key_with_different_content_on_two_nodes_conflicts(pg_store, pg_url):
    t = make_tenant(pg_store)
    keys = [f"key-{i}" for i in range(20)]
    barrier = CTX.Barrier(2)
    a, b = _run(nodeproc.submit_keys, [
        (pg_url, t.account.id, t.channel.id, keys, "content-a", barrier),
        (pg_url, t.account.id, t.channel.id, keys, "content-b", barrier)])
    outcomes: dict[str, list] = {}
    for key, mid, replayed in a + b:
        outcomes.setdefault(key, []).append("conflict" if mid == "conflict" else replayed)
    assert all(sorted(v, key=str) == [False, "conflict"] for v in outcomes.values()), outcomes
    assert pg_store.queue.accounting() == {"queued": len(keys)}
