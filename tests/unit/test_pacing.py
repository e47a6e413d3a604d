"""Pacing: token bucket maths on an injected clock, adaptive slowdowns, connection caps."""

from __future__ import annotations

import asyncio

import pytest

from helo_smtp.config import PoolConfig
from helo_smtp.outbound.pacing import (
    HOLDOFF,
    MIN_FACTOR,
    ConnectionCaps,
    Pacer,
    TokenBucket,
    reads_as_throttling,
)
from helo_smtp.store.destinations import SLOWDOWN_PERIOD, Slowdown
from tests.support.waiting import wait_for


class Clock:
    """A clock the test moves by hand (used as both the monotonic and the wall clock)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def pacer(rate: float = 0.0, per_domain: float = 0.0, store=None, clock: Clock | None = None,
          pool: str = "broadcast") -> tuple[Pacer, Clock]:
    clock = clock or Clock()
    cfg = PoolConfig(rate=rate, per_domain_rate=per_domain)
    return Pacer(cfg, store, clock, pool=pool, wall=clock), clock


def send_all(p: Pacer, clock: Clock, domains: list[str]) -> float:
    """Send one message to each domain in turn, waiting as told; returns the time taken."""
    start = clock.t
    for d in domains:
        while (wait := p.delay(d)) > 0:
            clock.advance(wait)
    return clock.t - start


# ---- token buckets ----------------------------------------------------------------------

def test_rate_zero_is_unpaced():
    p, _ = pacer(rate=0.0, per_domain=0.0)
    assert all(p.delay("example.test") == 0.0 for _ in range(10_000))


def test_pool_bucket_allows_one_second_burst_then_waits():
    p, clock = pacer(rate=10.0)
    assert [p.delay(f"d{i}.test") for i in range(10)] == [0.0] * 10
    wait = p.delay("d10.test")
    assert wait == pytest.approx(0.1)
    assert p.delay("d10.test") == pytest.approx(0.1)  # a refusal takes nothing
    clock.advance(0.05)
    assert p.delay("d10.test") == pytest.approx(0.05)
    clock.advance(0.05)
    assert p.delay("d10.test") == 0.0


def test_per_domain_bucket_is_independent_per_domain():
    p, clock = pacer(rate=100.0, per_domain=2.0)
    assert p.delay("a.test") == 0.0
    assert p.delay("a.test") == 0.0
    assert p.delay("a.test") == pytest.approx(0.5)
    assert p.delay("b.test") == 0.0  # another destination is not held back by a.test
    assert p.delay("A.TEST") == pytest.approx(0.5)  # domains compare case-insensitively
    clock.advance(0.5)
    assert p.delay("a.test") == 0.0


def test_refused_domain_takes_no_pool_tokens():
    p, _ = pacer(rate=3.0, per_domain=1.0)
    assert p.delay("a.test") == 0.0
    for _ in range(5):
        assert p.delay("a.test") > 0
    assert [p.delay("b.test"), p.delay("c.test")] == [0.0, 0.0]


def test_sustained_rate_matches_config():
    p, clock = pacer(rate=20.0, per_domain=5.0)
    domains = [f"d{i % 4}.test" for i in range(400)]
    # 4 domains x 5/s = 20/s, the pool rate; after the first second's burst, 380 more at 20/s.
    assert send_all(p, clock, domains) == pytest.approx(380 / 20.0, rel=0.02)


def test_per_domain_rate_limits_a_single_domain_below_pool_rate():
    p, clock = pacer(rate=50.0, per_domain=5.0)
    assert send_all(p, clock, ["one.test"] * 105) == pytest.approx(100 / 5.0, rel=0.02)


def test_batch_larger_than_capacity_goes_from_full_bucket_into_debt():
    b = TokenBucket(rate=2.0, capacity=2.0, now=0.0)
    assert b.wait(10, 0.0) == 0.0  # a full bucket never refuses forever
    b.take(10)
    assert b.wait(1, 0.0) == pytest.approx(4.5)  # 8 tokens of debt + 1 at 2/s


def test_reload_changes_rates_and_keeps_levels():
    p, _ = pacer(rate=10.0)
    for _ in range(10):
        assert p.delay("x.test") == 0.0
    p.reload(PoolConfig(rate=100.0))
    assert p.delay("x.test") == pytest.approx(0.01)  # empty bucket, now refilling at 100/s
    p.reload(PoolConfig(rate=0.0))
    assert p.delay("x.test") == 0.0


# ---- what reads as throttling -----------------------------------------------------------

@pytest.mark.parametrize(("code", "status", "text", "expected"), [
    (421, "4.7.0", "Try again later, closing connection", True),
    (421, None, "Too many connections from your IP", True),
    (451, "4.3.2", "Rate limit exceeded", True),
    (451, None, "Throttled: slow down", True),
    (450, "4.7.1", "Message deferred due to unusual rate", True),
    (451, "4.7.500", "Server busy. Please try again later", True),
    (451, "4.7.1", "Greylisted, please try again later", False),
    (450, "4.2.0", "Greylisting in action", False),
    (452, "4.5.3", "Too many recipients", False),
    (450, "4.2.2", "Mailbox full", False),
    (451, "4.3.0", "Local error in processing", False),
    (550, "5.7.1", "Rate limit exceeded", False),
    (None, None, "connection lost", False),
])
def test_reads_as_throttling(code, status, text, expected):
    assert reads_as_throttling(code, status, text) is expected


# ---- adaptive slowdown ------------------------------------------------------------------

def test_throttling_reply_halves_domain_rate_for_a_period_then_eases_back():
    p, clock = pacer(rate=100.0, per_domain=8.0)
    assert p.note_reply("slow.test", 421, "4.7.0", "Try again later") is True
    assert p.domain_rate("slow.test") == pytest.approx(4.0)
    assert p.domain_rate("fast.test") == pytest.approx(8.0)
    clock.advance(SLOWDOWN_PERIOD - 1)
    assert p.factor("slow.test") == 0.5
    clock.advance(1)
    assert p.factor("slow.test") == 1.0  # one doubling after the hold brings 1/2 back to 1
    assert p.slowdowns() == []


def test_slowdowns_compound_to_a_floor_and_decay_stepwise():
    p, clock = pacer(rate=100.0, per_domain=8.0)
    factors = []
    for _ in range(8):
        assert p.note_reply("slow.test", 451, None, "Too many messages, throttled") is True
        factors.append(p.factor("slow.test"))
        clock.advance(HOLDOFF)
    assert factors == [0.5, 0.25, 0.125, 0.0625, MIN_FACTOR, MIN_FACTOR, MIN_FACTOR,
                       MIN_FACTOR]
    clock.advance(SLOWDOWN_PERIOD - HOLDOFF)  # hold ends: 1/16 -> 1/8, then doubling per period
    steps = []
    for _ in range(4):
        steps.append(p.factor("slow.test"))
        clock.advance(SLOWDOWN_PERIOD)
    assert steps == [0.125, 0.25, 0.5, 1.0]


def test_a_burst_of_throttling_replies_counts_once():
    p, clock = pacer(rate=10.0, per_domain=4.0)
    assert p.note_reply("slow.test", 421, "4.7.0", "try again later") is True
    assert [p.note_reply("slow.test", 421, "4.7.0", "try again later") for _ in range(5)] \
        == [False] * 5
    assert p.factor("slow.test") == 0.5
    clock.advance(HOLDOFF)
    assert p.note_reply("slow.test", 421, "4.7.0", "try again later") is True
    assert p.factor("slow.test") == 0.25


def test_slowdown_makes_the_bucket_slower():
    p, clock = pacer(rate=100.0, per_domain=4.0)
    p.note_reply("slow.test", 421, "4.7.0", "rate limited")
    p.note_reply("other.test", 421, "4.7.0", "rate limited")
    clock.advance(HOLDOFF)
    p.note_reply("slow.test", 421, "4.7.0", "rate limited")  # 4/s -> 1/s
    assert send_all(p, clock, ["slow.test"] * 11) == pytest.approx(10.0, rel=0.02)


def test_non_throttling_replies_and_unpaced_pools_never_slow_down():
    p, _ = pacer(rate=10.0, per_domain=2.0)
    assert p.note_reply("x.test", 550, "5.1.1", "No such user") is False
    assert p.note_reply("x.test", 450, "4.2.0", "Greylisted") is False
    assert p.factor("x.test") == 1.0
    tx, _ = pacer(rate=0.0, per_domain=0.0, pool="transactional")
    assert tx.note_reply("x.test", 421, "4.7.0", "Too many connections") is False
    assert tx.delay("x.test") == 0.0


def test_pool_rate_only_still_slows_the_throttling_domain():
    p, _ = pacer(rate=10.0, per_domain=0.0)
    assert p.note_reply("slow.test", 421, "4.7.0", "try again later") is True
    assert p.domain_rate("slow.test") == pytest.approx(5.0)
    assert p.domain_rate("other.test") == 0.0  # unslowed domains only share the pool bucket
    assert [p.delay("slow.test") for _ in range(5)] == [0.0] * 5
    assert p.delay("slow.test") == pytest.approx(0.2)
    assert [p.delay("other.test") for _ in range(5)] == [0.0] * 5  # the pool's other half


def test_slowdown_is_stored_and_survives_a_restart(store):
    clock = Clock(t=2_000_000_000.0)
    p, _ = pacer(rate=50.0, per_domain=5.0, store=store.destinations, clock=clock)
    assert p.note_reply("Slow.Test", 421, "4.7.0", "Try again\r\nlater") is True
    row = wait_for(lambda: store.destinations.get("broadcast", "slow.test"), timeout=5,
                   what="slowdown row")
    assert row.slow_factor == 0.5
    assert row.slow_until == clock.t + SLOWDOWN_PERIOD
    assert row.reason == "421 4.7.0 Try again later"  # control characters flattened
    restarted, _ = pacer(rate=50.0, per_domain=5.0, store=store.destinations, clock=clock)
    assert restarted.factor("slow.test") == 0.5
    other_pool, _ = pacer(rate=50.0, per_domain=5.0, store=store.destinations, clock=clock,
                          pool="transactional")
    assert other_pool.factor("slow.test") == 1.0


def test_destinations_listing_and_pruning(store):
    now = 1_700_000_000.0
    store.destinations.set(Slowdown("broadcast", "a.test", now + 100, 0.5, "421"))
    store.destinations.set(Slowdown("broadcast", "b.test", now - SLOWDOWN_PERIOD, 0.5, "421"))
    store.destinations.set(Slowdown("transactional", "c.test", now + 100, 0.25, "451"))
    assert [s.domain for s in store.destinations.list()] == ["a.test", "b.test", "c.test"]
    assert [s.domain for s in store.destinations.list("broadcast", active_at=now)] == ["a.test"]
    assert store.destinations.prune(now) == 1
    assert store.destinations.get("broadcast", "b.test") is None
    assert store.destinations.clear("broadcast") == 1
    assert [s.domain for s in store.destinations.list()] == ["c.test"]


# ---- connection caps --------------------------------------------------------------------

def test_connection_caps_per_domain_and_pool():
    caps = ConnectionCaps(max_connections=3, per_domain=2)
    assert caps.try_acquire("a.test") and caps.try_acquire("A.test")
    assert not caps.try_acquire("a.test")
    assert caps.try_acquire("b.test")
    assert not caps.try_acquire("c.test")  # the pool is full
    caps.release("a.test")
    assert caps.in_use("a.test") == 1
    assert caps.try_acquire("c.test")
    assert caps.total == 3
    with pytest.raises(RuntimeError):
        caps.release("nowhere.test")


def test_zero_caps_mean_unlimited():
    caps = ConnectionCaps(max_connections=0, per_domain=0)
    assert all(caps.try_acquire("a.test") for _ in range(500))


async def test_acquire_waits_for_a_release():
    caps = ConnectionCaps(max_connections=10, per_domain=1)
    await caps.acquire("a.test")
    waiter = asyncio.create_task(caps.acquire("a.test"))
    async with caps.slot("b.test"):
        await asyncio.sleep(0)
        assert not waiter.done()
    assert not waiter.done()  # b.test's release frees nothing for a.test
    caps.release("a.test")
    await asyncio.wait_for(waiter, 2)
    assert caps.in_use("a.test") == 1 and caps.total == 1
