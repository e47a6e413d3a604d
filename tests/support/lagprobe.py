"""Event-loop lag of a running relay, measured on the relay's own loop.

    probe = LagProbe.start(handle)          # handle: tests.support.relay.RelayHandle
    ... load ...
    lags = probe.stop(handle)               # seconds late, one sample per tick
    assert percentile(lags, 99) < 0.050
    probe.wall                              # the same, as the wall clock saw it

A task on the relay loop sleeps ``interval`` again and again and records how much later than
asked it woke up: any callback that blocks the loop (a slow hash, a synchronous read, a big
copy) shows up as lag for every session on it.

Two measures per tick. ``wall``: how late the wake-up was by the clock, which also counts the
time the OS gave the CPU to other processes (under ``pytest -n auto`` on 2 cores, the other
worker and the test's own clients). ``samples`` (what ``stop`` returns): the loop thread's own
CPU time spent during the tick beyond the interval (``time.thread_time``), i.e. the lag the
relay's own work causes, the same on a busy CI machine as on an idle one.

The relay under test runs in the test process, whose heap holds everything the earlier tests
of this pytest worker left behind. ``start`` freezes that heap (``gc.freeze``), as
``helo-smtp serve`` freezes its own after start-up, so a full collection during the probe
costs what it costs the relay, not what it costs pytest.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from typing import Any

INTERVAL = 0.002  # short ticks: a few hundred samples, so p99 is not just the max


class LagProbe:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self.wall: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0, c0 = loop.time(), time.thread_time()
            await asyncio.sleep(self.interval)
            self.wall.append(max(0.0, loop.time() - t0 - self.interval))
            self.samples.append(max(0.0, time.thread_time() - c0 - self.interval))

    async def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lag-probe")

    async def _stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @classmethod
    def start(cls, handle: Any, interval: float = INTERVAL) -> LagProbe:
        probe = cls(interval)
        gc.collect()
        gc.freeze()
        handle.run(probe._start())
        return probe

    def stop(self, handle: Any) -> list[float]:
        handle.run(self._stop())
        gc.unfreeze()
        return list(self.samples)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    assert values, "no samples"
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
