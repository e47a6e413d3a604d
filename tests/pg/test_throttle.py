"""Pacing and connection caps kept in the database, so they hold across nodes (both backends).

Clocks are explicit (``now=``): the bucket arithmetic is checked exactly, without sleeping.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from helo_smtp.store import Store
from tests.support.pgserver import BACKENDS

pytestmark = pytest.mark.parametrize("backend", BACKENDS, indirect=True)
T0 = 1_000_000.0


def take(store, domain="a.test", n=1, pool_rate=0.0, domain_rate=2.0, now=T0):
    return asyncio.run(store.throttle.take("broadcast", domain, n, pool_rate=pool_rate,
                                           domain_rate=domain_rate, now=now))


def tat(store, domain):
    row = store.db.read(lambda c: c.execute(
        "SELECT tat FROM rate_buckets WHERE pool = 'broadcast' AND domain = ?",
        (domain,)).fetchone())
    return row[0] if row else None


def test_bucket_gives_its_capacity_then_paces(store):
    assert [take(store) for _ in range(2)] == [0.0, 0.0]  # 2/s: one second's worth at once
    assert take(store) == pytest.approx(0.5)
    assert take(store) == pytest.approx(0.5)  # asking again took nothing
    assert take(store, now=T0 + 0.25) == pytest.approx(0.25)
    assert take(store, now=T0 + 0.5) == 0.0
    assert take(store, now=T0 + 0.5) == pytest.approx(0.5)
    assert take(store, now=T0 + 10) == 0.0  # refilled, but never above capacity:
    assert take(store, now=T0 + 10) == 0.0
    assert take(store, now=T0 + 10) == pytest.approx(0.5)


def test_a_batch_larger_than_the_bucket_goes_into_debt(store):
    assert take(store, n=5, domain_rate=2.0) == 0.0  # never refused forever
    assert take(store, domain_rate=2.0) == pytest.approx(2.0)  # 5 taken, 2 of credit: 3 s


def test_pool_and_domain_are_taken_together_or_not_at_all(store):
    assert take(store, "a.test", pool_rate=1.0, domain_rate=10.0) == 0.0
    before = tat(store, "b.test")
    assert take(store, "b.test", pool_rate=1.0, domain_rate=10.0) == pytest.approx(1.0)
    assert tat(store, "b.test") == pytest.approx(before or T0)  # given back (or never taken)
    assert take(store, "b.test", pool_rate=1.0, domain_rate=10.0, now=T0 + 1) == 0.0


def test_unpaced_stores_nothing(store):
    assert take(store, pool_rate=0.0, domain_rate=0.0) == 0.0
    assert store.db.read(lambda c: c.execute("SELECT count(*) FROM rate_buckets").fetchone()[0]
                         ) == 0


def _open_twin(store, tmp_path):
    """A second store on the same database: another node as far as the database can tell."""
    return Store.open(store.db.path)


def test_two_nodes_share_one_bucket(store, tmp_path):
    twin = _open_twin(store, tmp_path)
    granted: list[float] = []
    barrier = threading.Barrier(6)

    def node(s):
        barrier.wait(10)
        for _ in range(10):
            granted.append(take(s, "shared.test", domain_rate=10.0))

    try:
        threads = [threading.Thread(target=node, args=(s,)) for s in [store, twin] * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        twin.close()
    assert len(granted) == 60
    assert granted.count(0.0) == 10  # the bucket's capacity, for all nodes together


def slot(store, cap=2, holder="n1", lease=60.0, now=T0, domain="a.test"):
    return asyncio.run(store.throttle.acquire_slot("tx", domain, cap, holder, lease, now=now))


def test_connection_slots_are_capped_and_leased(store):
    assert [slot(store), slot(store, holder="n2"), slot(store)] == [0, 1, None]
    assert store.throttle.in_use("tx", "a.test", now=T0) == 2
    asyncio.run(store.throttle.release_slot("tx", "a.test", 0, "n1"))
    assert slot(store, holder="n3") == 0
    assert slot(store, domain="b.test") == 0  # caps are per domain
    # n2 and n3 died holding slots 1 and 0: taken over once their leases lapse, not before
    assert slot(store, now=T0 + 59) is None
    assert slot(store, holder="heir", now=T0 + 61) == 0
    assert not asyncio.run(store.throttle.renew_slot("tx", "a.test", 0, "n3", 60, now=T0 + 62))
    assert asyncio.run(store.throttle.renew_slot("tx", "a.test", 0, "heir", 60, now=T0 + 62))
    assert slot(store, cap=0) == -1  # no cap: nothing stored


def test_two_nodes_never_exceed_the_cap(store, tmp_path):
    twin = _open_twin(store, tmp_path)
    got: list[int | None] = []
    barrier = threading.Barrier(6)

    def node(s, name):
        barrier.wait(10)
        for _ in range(5):
            got.append(slot(s, cap=3, holder=name))

    try:
        threads = [threading.Thread(target=node, args=(s, f"n{i}"))
                   for i, s in enumerate([store, twin] * 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        twin.close()
    taken = [g for g in got if g is not None]
    assert sorted(taken) == [0, 1, 2] and len(got) == 30


def test_prune_forgets_full_buckets_and_lapsed_slots(store):
    take(store, "a.test")
    slot(store, lease=10)
    assert store.throttle.prune(now=T0 + 0.1) == 0
    assert store.throttle.prune(now=T0 + 11) == 2
    assert tat(store, "a.test") is None
