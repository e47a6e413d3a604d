"""The pool's connection budget, the per-domain cap, idle reuse and idle expiry."""

from __future__ import annotations

from helo_smtp.runtime import metrics
from tests.support.accounting import assert_accounting
from tests.support.metricvalue import sample
from tests.support.net import NET, POOLS
from tests.support.outbound import enqueue, wait_states
from tests.support.waiting import wait_for


def out_connections() -> float:
    return sample(metrics.CONNECTIONS_ACTIVE, direction="out")


def deliver_all(rig, rcpts):
    ids = [enqueue(rig.store, rig.tenant, [r]) for r in rcpts]
    rig.workers.wake()
    for mid in ids:
        wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
    return ids


def test_the_pool_budget_caps_open_connections(rig_factory, sinks):
    sinks[2].h.stall = {"DATA": 0.1}  # long enough for every delivery to want a connection
    rig = rig_factory(pools={"transactional": {"max_connections": 2,
                                               "per_domain_connections": 10}})
    deliver_all(rig, [f"n{i}@other.test" for i in range(8)])
    assert len(sinks[2].h.messages) == 8
    assert len(sinks[2].h.connections) == 2  # two at once, each reused by the next message
    assert_accounting(rig.store)


def test_the_per_domain_cap_serializes_one_destination(rig_factory, sinks):
    sinks[0].h.stall = {"DATA": 0.05}
    rig = rig_factory(pools={"transactional": {"max_connections": 10,
                                               "per_domain_connections": 1}})
    deliver_all(rig, [f"d{i}@example.test" for i in range(5)] + ["x@other.test"])
    assert len(sinks[0].h.connections) == 1 and len(sinks[0].h.messages) == 5
    assert len(sinks[2].h.connections) == 1  # another domain is not held by that cap


def test_idle_connections_close_after_their_time(rig_factory, sinks):
    base = out_connections()
    rig = rig_factory(delivery={"idle_connection_seconds": 0.3})
    deliver_all(rig, ["first@other.test"])
    wait_for(lambda: out_connections() == base, what="the idle connection to be closed")
    deliver_all(rig, ["second@other.test"])
    assert len(sinks[2].h.connections) == 2  # the first one was not kept past 0.3 s
    rig.workers.stop()
    assert out_connections() == base


def test_stop_quits_idle_connections(rig_factory, sinks):
    base = out_connections()
    rig = rig_factory()
    deliver_all(rig, ["kept@other.test"])
    assert out_connections() == base + 1  # kept for the next message
    rig.workers.stop()
    assert out_connections() == base


def test_reload_applies_new_pool_settings(rig_factory, make_cfg, sinks):
    rig = rig_factory()
    deliver_all(rig, ["before@other.test"])
    new_cfg = make_cfg(pools={"transactional": {"helo_name": "new.relay.test",
                                                "source_addresses": [NET + "4"]}})

    async def reload() -> None:
        for w in rig.workers.workers.values():
            w.reload(new_cfg)

    rig.workers.run(reload())
    deliver_all(rig, ["after@other.test"])
    seen = [(m["rcpt_tos"][0], m["peer"][0], m["ehlo"]) for m in sinks[2].h.messages]
    assert seen == [("before@other.test", POOLS["transactional"][0], "tx.relay.test"),
                    ("after@other.test", NET + "4", "new.relay.test")]
