"""Where a claimed group waits for its turn, so a paced drain sleeps instead of spinning.

A worker used to give back (``store.queue.release``) every claimed group its pacer said must
wait, due again 0.1 s later: with a paced backlog it claimed 200 rows, started one and released
the rest, five times a second (issue #23). Now:

* **Claim only what can start.** A paced pool claims at most the tokens its bucket holds now,
  less the groups already waiting that will take them (``claim_limit``); with none, the worker
  sleeps until the next token (``Pacer.pool_wait``) without touching the store.
* **Wait in memory, in line.** On a paced pool, a claimed group whose destination has no token
  yet (or already has two waves of connections) waits at its domain's gate: it keeps its lease
  (the worker renews leases of every group it holds), holds no connection, and starts when the
  domain's bucket says so. One group per domain at a time asks the pacer (a FIFO lock), so a gate of
  fifty groups costs one timer, not fifty.
* **Skip busy domains.** While a domain has groups waiting, the claim skips it (``skip``) so
  its backlog stays in the store. When a claim with skipped domains comes back short, every
  due row belongs to a busy domain: claims that would skip the same domains stop (``dry``) until
  one of them leaves the busy set (then it is claimed from directly), ``WET_SECONDS`` after new
  mail arrives (``wet``: a campaign's stream of submissions costs one
  look per that time, not one per message) or after ``DRY_SECONDS`` (retries come due).
* **A bounded line.** A gate holds at most ``hold_cap`` groups (what the domain starts in
  ``HOLD_SECONDS``, at least two connection waves). A group beyond it is given back once, due
  when the line ahead of it will have gone (``overflow_due``), not 0.1 s later.

Nothing here touches the store; the worker does (``outbound/worker.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable

HOLD_SECONDS = 10.0  # a paced gate holds what its domain starts in this long
DRY_SECONDS = 5.0  # after a short claim past busy domains, look again at least this often
WET_SECONDS = 0.5  # new mail ends a dry spell this soon (one look per burst of submissions)
MIN_RETRY = 0.01  # seconds: never re-ask the pacer in a tighter loop than this


class Gates:
    """The waiting lines of one worker, one per destination domain."""

    def __init__(self, on_empty: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._on_empty = on_empty  # a line emptied: its domain's rows may be claimed again
        self._waiting: Counter[str] = Counter()
        self._locks: dict[str, asyncio.Lock] = {}
        self._nudges: dict[str, asyncio.Event] = {}
        self._dry: frozenset[str] | None = None
        self._dry_until = 0.0

    # ---- the lines ------------------------------------------------------------------------
    def waiting(self, domain: str) -> int:
        return self._waiting.get(domain, 0)

    def busy(self) -> list[str]:
        """Domains with groups waiting: the claim skips them."""
        return sorted(self._waiting)

    def spoken_for(self, rate: Callable[[str], float]) -> int:
        """Waiting groups that will take the pool's tokens within a second (``rate``: the
        domain's messages per second, 0 unpaced): a slow domain's long line does not keep
        the pool's tokens from other domains."""
        return sum(min(n, max(1, math.ceil(rate(d)))) for d, n in self._waiting.items())

    def hold_cap(self, domain_rate: float, per_domain_connections: int) -> int:
        """Groups one gate may hold: ``HOLD_SECONDS`` of its rate, at least two waves."""
        return max(2 * max(1, per_domain_connections), math.ceil(domain_rate * HOLD_SECONDS))

    def overflow_due(self, domain: str, wait: float, seconds_each: float, now: float) -> float:
        """When a group that found its domain's line full may be claimed again: after the
        ``wait`` the pacer named and the line ahead of it (``seconds_each`` a group)."""
        return now + max(wait, self.waiting(domain) * seconds_each)

    async def wait_turn(self, domain: str, ask: Callable[[], Awaitable[float]]) -> None:
        """Wait in ``domain``'s line until ``ask()`` (the pacer: 0.0 = go, tokens taken)
        lets this group go. Only the head of the line asks, when it gets there (an answer
        from claim time is stale once the groups ahead went), then after each wait, or
        sooner when ``nudge`` says a connection of the domain came free."""
        self._waiting[domain] += 1
        lock = self._locks.setdefault(domain, asyncio.Lock())
        try:
            async with lock:
                nudge = self._nudges.setdefault(domain, asyncio.Event())
                while (wait := await ask()) > 0:
                    nudge.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(nudge.wait(), max(MIN_RETRY, wait))
        finally:
            self._leave(domain)

    def nudge(self, domain: str) -> None:
        """A delivery to ``domain`` ended: its line's head may ask again now."""
        event = self._nudges.get(domain)
        if event is not None:
            event.set()

    def _leave(self, domain: str) -> None:
        self._waiting[domain] -= 1
        if self._waiting[domain] <= 0:
            del self._waiting[domain]
            lock = self._locks.get(domain)
            if lock is not None and not lock.locked():
                del self._locks[domain]
                self._nudges.pop(domain, None)
            # The next claim no longer skips this domain (its rows are found without a
            # walk past them); ``_dry`` stays: it still says no *other* domain has due rows,
            # so when this line fills again the walk is not repeated before it lapses.
            self._on_empty()

    # ---- when claiming is pointless -------------------------------------------------------
    def mark_dry(self, skipped: list[str]) -> None:
        """A claim skipping ``skipped`` came back short: all due rows are theirs."""
        self._dry = frozenset(skipped)
        self._dry_until = self._clock() + DRY_SECONDS

    def dry(self, skip: list[str]) -> bool:
        """True while claiming again would find nothing (see the module text)."""
        if self._dry is None or self._clock() >= self._dry_until:
            return False
        return self._dry <= set(skip)

    def dry_for(self) -> float:
        """Seconds until ``dry`` lapses by itself (0.0: not dry)."""
        return max(0.0, self._dry_until - self._clock()) if self._dry is not None else 0.0

    def wet(self) -> None:
        """New mail was committed: it may be for a domain that is not busy; look again soon."""
        if self._dry is not None:
            self._dry_until = min(self._dry_until, self._clock() + WET_SECONDS)
