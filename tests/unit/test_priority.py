"""``outbound/priority.py``: broadcast steps wait for transactional deliveries, boundedly."""

from __future__ import annotations

import asyncio

from helo_smtp.outbound.priority import Priority, for_loop


def test_broadcast_waits_until_the_transactional_delivery_ends():
    async def run() -> tuple[list[str], int]:
        p, order = Priority(), []

        async def urgent() -> None:
            p.begin()
            await asyncio.sleep(0.01)
            order.append("transactional")
            p.end()

        async def bulk() -> None:
            await p.defer(limit=10.0)
            order.append("broadcast")

        await asyncio.gather(urgent(), bulk())
        return order, p.deferred

    assert asyncio.run(run()) == (["transactional", "broadcast"], 1)


def test_the_wait_is_bounded_and_free_when_nothing_is_urgent():
    async def run() -> tuple[int, int, int]:
        p = Priority()
        await p.defer()
        idle = p.deferred
        p.begin()  # never ends: the broadcast step goes anyway once the limit passes
        await p.defer(limit=0.01)
        return idle, p.deferred, p.urgent

    assert asyncio.run(run()) == (0, 1, 1)


def test_the_workers_on_one_loop_share_one_priority():
    async def run() -> bool:
        loop = asyncio.get_running_loop()
        return for_loop(loop) is for_loop(loop)

    assert asyncio.run(run())
