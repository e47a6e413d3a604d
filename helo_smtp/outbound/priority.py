"""Transactional first on a shared event loop.

Both workers run on one loop (the delivery process). Every step of every delivery is a
callback in the loop's one ready queue, first come first served; with fifty broadcast
deliveries in flight, each reading and DKIM-signing its message right on the loop, a
transactional delivery's next step waits behind all of theirs. So, while any transactional
delivery is under way, a broadcast delivery about to do its heavy step (read and sign the
message) waits for the transactional ones to finish, at most ``DEFER_LIMIT`` seconds: a
password reset overtakes the campaign, and a steady transactional flow still cannot stall the
campaign for more than that per delivery (its throughput hardly changes: fifty deliveries
overlap their waits).

One ``Priority`` per loop (``for_loop``), so both workers on it share it wherever they were
made (the daemon, the delivery process, the tests' rigs).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

DEFER_LIMIT = 0.05  # seconds a broadcast delivery waits for transactional ones, at most

_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Priority] = (
    weakref.WeakKeyDictionary())


class Priority:
    """Counts transactional deliveries under way; broadcast ones ``defer`` to them."""

    def __init__(self) -> None:
        self.urgent = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.deferred = 0  # broadcast steps that waited (for tests and metrics)

    def begin(self) -> None:
        self.urgent += 1
        self._idle.clear()

    def end(self) -> None:
        self.urgent = max(0, self.urgent - 1)
        if self.urgent == 0:
            self._idle.set()

    async def defer(self, limit: float = DEFER_LIMIT) -> None:
        """Wait while transactional deliveries are under way, ``limit`` seconds at most."""
        if not self.urgent:
            return
        self.deferred += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), limit)


def for_loop(loop: asyncio.AbstractEventLoop) -> Priority:
    """The ``Priority`` shared by the workers on ``loop``."""
    p = _BY_LOOP.get(loop)
    if p is None:
        p = _BY_LOOP[loop] = Priority()
    return p
