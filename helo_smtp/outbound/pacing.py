"""Pacing for one IP pool: token buckets, connection caps and adaptive slowdowns.

* ``Pacer.delay(domain, n)`` asks two token buckets, the pool's (``rate``) and the destination
  domain's (``per_domain_rate``): ``0.0`` means send now (the tokens are taken), a positive value
  is how long to wait (nothing is taken). A rate of 0 means unpaced. The transactional pool has
  rate 0 by default, so broadcast settings never slow transactional mail (SPEC §7).
* ``Pacer.note_reply`` reads a remote 4xx; one that reads as rate limiting (421/451 with
  throttling text, or an enhanced 4.7.x, greylisting excepted) halves that domain's rate for
  ``SLOWDOWN_PERIOD`` seconds, compounding down to ``MIN_FACTOR``; afterwards the rate doubles
  back one step per period. Slowdowns are written to the ``destinations`` table (``queue stats``
  shows them; they survive a restart) without blocking the event loop.
* ``ConnectionCaps`` limits simultaneous connections per pool and per destination domain.

Buckets run on a monotonic clock; slowdowns are stored in wall-clock time. Both clocks are
injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Protocol

from helo_smtp.config import PoolConfig
from helo_smtp.runtime import metrics
from helo_smtp.store.destinations import SLOWDOWN_PERIOD, Slowdown

log = logging.getLogger("helo_smtp.pacing")

MIN_FACTOR = 1 / 16  # a slowed domain never drops below 1/16 of its configured rate
HOLDOFF = 60.0  # replies within this many seconds of a trigger do not compound it again
EPSILON = 1e-9  # tokens
MAX_BUCKETS = 10_000  # idle, full per-domain buckets beyond this are forgotten

_THROTTLE_TEXT = re.compile(
    r"rate.?limit|too many|try again later|throttl|too fast|slow down", re.IGNORECASE)
_GREYLIST_TEXT = re.compile(r"gr[ae]y.?list", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def reads_as_throttling(code: int | None, status: str | None, text: str | None) -> bool:
    """Does this remote reply mean "you are sending too fast"?

    Greylisting (RFC 6647) also says "try again later" but is about the sender being new, not
    fast, so it never triggers a slowdown.
    """
    if code is None or not 400 <= code < 500:
        return False
    text = text or ""
    if _GREYLIST_TEXT.search(text):
        return False
    if status and status.startswith("4.7."):
        return True
    return code in (421, 451) and bool(_THROTTLE_TEXT.search(text))


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; starts full. Rate 0: always available."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def wait(self, n: float, now: float) -> float:
        """Seconds until ``n`` tokens can be taken. More than the capacity can be taken from a
        full bucket (it then goes into debt), so a large batch is never refused forever."""
        if self.rate <= 0:
            return 0.0
        self.refill(now)
        need = min(n, self.capacity)
        # EPSILON: float refills land a hair short of whole tokens; never ask for a 1e-17 s wait.
        return 0.0 if self.tokens >= need - EPSILON else (need - self.tokens) / self.rate

    def take(self, n: float) -> None:
        if self.rate > 0:
            self.tokens -= n

    def set_rate(self, rate: float, capacity: float, now: float) -> None:
        self.refill(now)
        self.rate, self.capacity = rate, capacity
        self.tokens = min(self.tokens, capacity)

    def full(self, now: float) -> bool:
        self.refill(now)
        return self.tokens >= self.capacity


def _capacity(rate: float) -> float:
    """One second's worth of tokens, at least one message."""
    return max(1.0, rate)


class SlowdownStore(Protocol):
    def list(self, pool: str | None = None, active_at: float | None = None,
             period: float = SLOWDOWN_PERIOD) -> list[Slowdown]: ...

    def submit(self, s: Slowdown) -> Future[None]: ...


class Pacer:
    """Token buckets and slowdowns for one pool (``pool`` names it in the store)."""

    def __init__(self, pool_cfg: PoolConfig, store_destinations: SlowdownStore | None = None,
                 clock: Callable[[], float] = time.monotonic, *, pool: str = "broadcast",
                 wall: Callable[[], float] = time.time, period: float = SLOWDOWN_PERIOD) -> None:
        self.pool = pool
        self.cfg = pool_cfg
        self._store = store_destinations
        self._clock, self._wall, self._period = clock, wall, period
        self._pool_bucket = TokenBucket(pool_cfg.rate, _capacity(pool_cfg.rate), clock())
        self._buckets: dict[str, TokenBucket] = {}
        self._slow: dict[str, Slowdown] = {}
        if store_destinations is not None:
            for s in store_destinations.list(pool, active_at=wall(), period=period):
                self._slow[s.domain] = s

    # ---- rates --------------------------------------------------------------------------
    def base_rate(self) -> float:
        """The per-domain rate before slowdowns (falls back to the pool rate; 0: unpaced)."""
        return self.cfg.per_domain_rate or self.cfg.rate

    def factor(self, domain: str) -> float:
        """The slowdown factor in force for ``domain`` (1.0: none)."""
        s = self._slow.get(domain.lower())
        if s is None:
            return 1.0
        f = s.effective_factor(self._wall(), self._period)
        if f >= 1.0:
            del self._slow[s.domain]
        return f

    def domain_rate(self, domain: str) -> float:
        base = self.cfg.per_domain_rate
        if base <= 0 and domain.lower() in self._slow:
            base = self.cfg.rate  # only a slowed domain gets a bucket of its own here
        return base * self.factor(domain)

    def _bucket(self, domain: str, now: float) -> TokenBucket:
        rate = self.domain_rate(domain)
        b = self._buckets.get(domain)
        if b is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            b = self._buckets[domain] = TokenBucket(rate, _capacity(rate), now)
        elif b.rate != rate:
            b.set_rate(rate, _capacity(rate), now)
        return b

    def _forget_idle(self, now: float) -> None:
        for d in [d for d, b in self._buckets.items() if b.full(now)]:
            del self._buckets[d]

    # ---- the worker's calls -------------------------------------------------------------
    def delay(self, domain: str, n: int = 1) -> float:
        """0.0: send ``n`` messages to ``domain`` now (tokens taken); else seconds to wait."""
        domain, now = domain.lower(), self._clock()
        bucket = self._bucket(domain, now)
        wait = max(self._pool_bucket.wait(n, now), bucket.wait(n, now))
        if wait > 0:
            return wait
        self._pool_bucket.take(n)
        bucket.take(n)
        return 0.0

    def note_reply(self, domain: str, code: int | None, status: str | None,
                   text: str | None) -> bool:
        """Read a remote reply; True when it started or deepened a slowdown of ``domain``."""
        if not reads_as_throttling(code, status, text) or self.base_rate() <= 0:
            return False
        domain, now = domain.lower(), self._wall()
        current = self._slow.get(domain)
        if current is not None and now < current.slow_until - self._period + HOLDOFF:
            return False  # one burst of replies to one overload counts once
        factor = self.factor(domain) if current is not None else 1.0
        reason = _CONTROL.sub(" ", f"{code} {status or ''} {text or ''}").strip()[:200]
        s = Slowdown(self.pool, domain, now + self._period, max(MIN_FACTOR, factor / 2), reason)
        self._slow[domain] = s
        metrics.PACING_SLOWDOWNS.labels(self.pool).inc()
        log.warning("event=pacing_slowdown pool=%s domain=%s factor=%.4g until=%.0f",
                    self.pool, domain, s.slow_factor, s.slow_until)
        self._persist(s)
        return True

    def _persist(self, s: Slowdown) -> None:
        if self._store is None:
            return
        try:
            fut = self._store.submit(s)
        except Exception as exc:  # noqa: BLE001 - pacing goes on from memory
            log.error("event=slowdown_not_saved domain=%s error=%s", s.domain, exc)
            return
        fut.add_done_callback(_log_failure)

    def slowdowns(self) -> list[Slowdown]:
        """Slowdowns in force now, by domain."""
        return [s for d, s in sorted(self._slow.items()) if self.factor(d) < 1.0]

    def reload(self, pool_cfg: PoolConfig) -> None:
        """New pool settings (SIGHUP); token levels carry over, clamped to the new capacity."""
        self.cfg = pool_cfg
        now = self._clock()
        self._pool_bucket.set_rate(pool_cfg.rate, _capacity(pool_cfg.rate), now)
        for domain, b in self._buckets.items():
            rate = self.domain_rate(domain)
            b.set_rate(rate, _capacity(rate), now)


def _log_failure(fut: Future[None]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("event=slowdown_not_saved error=%s", exc)


class ConnectionCaps:
    """Simultaneous connections for one pool and per destination domain (0: no cap)."""

    def __init__(self, max_connections: int, per_domain: int) -> None:
        self.max_connections = max_connections
        self.per_domain = per_domain
        self.total = 0
        self._by_domain: dict[str, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def for_pool(cls, pool_cfg: PoolConfig) -> ConnectionCaps:
        return cls(pool_cfg.max_connections, pool_cfg.per_domain_connections)

    def in_use(self, domain: str) -> int:
        return self._by_domain.get(domain.lower(), 0)

    def _free(self, domain: str) -> bool:
        return ((not self.max_connections or self.total < self.max_connections)
                and (not self.per_domain or self.in_use(domain) < self.per_domain))

    def try_acquire(self, domain: str) -> bool:
        """Take a connection slot for ``domain`` if one is free."""
        if not self._free(domain):
            return False
        d = domain.lower()
        self._by_domain[d] = self._by_domain.get(d, 0) + 1
        self.total += 1
        return True

    def release(self, domain: str) -> None:
        d = domain.lower()
        left = self._by_domain.get(d, 0) - 1
        if left < 0:
            raise RuntimeError(f"release without acquire for {d}")
        if left:
            self._by_domain[d] = left
        else:
            del self._by_domain[d]
        self.total -= 1
        self._wake()

    def _wake(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)

    async def acquire(self, domain: str) -> None:
        """Wait for a slot for ``domain`` and take it."""
        while not self.try_acquire(domain):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)

    @contextlib.asynccontextmanager
    async def slot(self, domain: str) -> AsyncIterator[None]:
        """``async with caps.slot(domain):`` hold one connection slot for the block."""
        await self.acquire(domain)
        try:
            yield
        finally:
            self.release(domain)

    def reload(self, pool_cfg: PoolConfig) -> None:
        self.max_connections = pool_cfg.max_connections
        self.per_domain = pool_cfg.per_domain_connections
        self._wake()
