"""``outbound/gates.py``: the waiting lines of a paced worker, with a scripted clock."""

from __future__ import annotations

import asyncio

from helo_smtp.outbound import gates
from helo_smtp.outbound.gates import Gates


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_hold_cap_is_the_rate_for_hold_seconds_or_two_waves():
    g = Gates()
    assert g.hold_cap(5.0, 5) == int(5 * gates.HOLD_SECONDS)
    assert g.hold_cap(0.0, 10) == 20  # unpaced: two waves of connections
    assert g.hold_cap(0.1, 0) == 2


def test_overflow_is_due_after_the_line_ahead_not_at_once():
    g = Gates()
    g._waiting["a.test"] = 50
    assert g.overflow_due("a.test", 0.2, 0.2, 1000.0) == 1000.0 + 10.0
    assert g.overflow_due("b.test", 0.2, 0.2, 1000.0) == 1000.0 + 0.2


def test_spoken_for_counts_a_seconds_worth_of_each_line():
    g = Gates()
    g._waiting.update({"slow.test": 40, "fast.test": 3, "unpaced.test": 7})
    rates = {"slow.test": 5.0, "fast.test": 50.0, "unpaced.test": 0.0}
    assert g.spoken_for(rates.__getitem__) == 5 + 3 + 1


def test_dry_until_a_busy_domain_leaves_new_mail_comes_or_time_passes():
    clock = Clock()
    g = Gates(clock=clock)
    g.mark_dry(["a.test"])
    assert g.dry(["a.test"]) and g.dry(["a.test", "b.test"])
    assert not g.dry([])  # a.test left the busy set: look again
    g.wet()  # new mail: look again soon, not at once
    assert g.dry(["a.test"])
    clock.now += gates.WET_SECONDS
    assert not g.dry(["a.test"])
    g.mark_dry(["a.test"])
    assert g.dry_for() == gates.DRY_SECONDS
    clock.now += gates.DRY_SECONDS
    assert not g.dry(["a.test"])


def test_one_line_per_domain_in_order_and_the_last_one_out_says_so():
    emptied: list[bool] = []
    g = Gates(on_empty=lambda: emptied.append(True))
    order: list[int] = []
    asks: list[int] = []

    async def job(n: int) -> None:
        tries = iter([0.01, 0.0])  # the pacer says wait once, then go

        async def ask() -> float:
            asks.append(n)
            return next(tries)

        await g.wait_turn("a.test", ask)
        order.append(n)

    async def run() -> None:
        tasks = [asyncio.create_task(job(n)) for n in range(3)]
        await asyncio.sleep(0)
        assert g.busy() == ["a.test"] and g.waiting("a.test") == 3
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert order == [0, 1, 2]
    assert asks == [0, 0, 1, 1, 2, 2]  # only the head of the line asks the pacer
    assert g.busy() == [] and emptied == [True]


def test_a_nudge_ends_the_heads_wait_early():
    g = Gates()
    answers = iter([60.0, 0.0])  # wait a minute... but a connection frees at once

    async def ask() -> float:
        return next(answers)

    async def run() -> None:
        task = asyncio.create_task(g.wait_turn("a.test", ask))
        await asyncio.sleep(0.01)
        g.nudge("a.test")
        await asyncio.wait_for(task, 30)

    asyncio.run(run())
    assert g.busy() == []
