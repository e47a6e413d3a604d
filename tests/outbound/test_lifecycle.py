"""Leases, lifetimes and stopping: a lapsed lease returns the row without counting a failure,
a held lease is renewed while a slow delivery runs, a stop gives unfinished rows back, and a
recipient past its lifetime is expired exactly once."""

from __future__ import annotations

import asyncio
import time

from helo_smtp.errors import StorageFull
from helo_smtp.models import MailType
from tests.support.accounting import assert_accounting
from tests.support.outbound import WorkerRig, capture_log, enqueue, wait_states
from tests.support.waiting import wait_for


def test_a_lapsed_lease_returns_the_row_and_is_not_a_failure(rig_factory, sinks):
    rig = rig_factory()
    rig.workers.stop()  # no worker yet: a dead node holds the row
    mid = enqueue(rig.store, rig.tenant, ["lost@other.test"])
    [row] = rig.store.admin.recipients(mid)
    claimed = asyncio.run(rig.store.queue.claim(MailType.TRANSACTIONAL, 10, "dead-node", 0.3))
    assert [r.id for r in claimed] == [row["id"]]
    workers = WorkerRig(rig.cfg, rig.store)
    try:
        wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
    finally:
        workers.stop()
    [row] = rig.store.admin.recipients(mid)
    assert row["attempts"] == 1  # the lapse itself counted nothing
    assert rig.store.events.counts() == {"message.received": 1,
                                         "recipient.accepted": 1, "delivery.delivered": 1}


def test_a_slow_delivery_keeps_its_lease(rig_factory, sinks):
    sinks[2].h.stall = {"DATA": 2.5}
    rig = rig_factory(delivery={"lease_seconds": 1.0})
    mid = enqueue(rig.store, rig.tenant, ["slow@other.test"])
    rig.workers.wake()
    wait_for(lambda: any(c[1] == "DATA" for c in sinks[2].h.commands), what="DATA to start")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # well past the 1 s lease: still ours
        [row] = rig.store.admin.queue_list(domain="other.test")
        assert row["lease_until"] > time.time()
        assert asyncio.run(rig.store.queue.claim(MailType.TRANSACTIONAL, 10, "rival", 30)) == []
        time.sleep(0.1)
    wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
    assert len(sinks[2].h.messages) == 1  # nobody else took it meanwhile
    assert_accounting(rig.store)


def test_stop_gives_unfinished_rows_back(rig_factory, sinks):
    sinks[2].h.stall = {"DATA": 3.0}
    rig = rig_factory()
    mid = enqueue(rig.store, rig.tenant, ["cut@other.test"])
    rig.workers.wake()
    wait_for(lambda: any(c[1] == "DATA" for c in sinks[2].h.commands), what="DATA to start")
    rig.workers.stop(grace=0.1)
    [row] = rig.store.admin.queue_list(domain="other.test")
    assert (row["state"], row["attempts"], row["lease_until"]) == ("queued", 0, None)
    assert row["next_attempt_at"] <= time.time()  # due again at once
    assert rig.store.admin.attempts(mid) == []
    assert rig.store.events.counts() == {"message.received": 1, "recipient.accepted": 1}


def test_a_recipient_claimed_after_its_lifetime_expires_without_a_connection(rig_factory,
                                                                            sinks):
    rig = rig_factory()
    life = rig.store.queue.lifetimes[MailType.TRANSACTIONAL]
    mid = enqueue(rig.store, rig.tenant, ["late@other.test"],
                  created_at=time.time() - life - 1)
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"expired": 1})
    [att] = rig.store.admin.attempts(mid)
    assert (att["stage"], att["outcome"], att["remote_host"]) == ("queue", "expired", None)
    assert not sinks[2].h.connections
    assert rig.store.admin.message(mid)["status"] == "failed"
    assert rig.store.events.counts() == {"message.received": 1,
                                         "recipient.accepted": 1, "message.expired": 1}
    assert_accounting(rig.store)


def test_a_deferral_past_the_lifetime_expires_once(rig_factory, sinks):
    sinks[2].h.rcpt_replies["brief@other.test"] = "451 4.3.0 try again later"
    rig = rig_factory(delivery={"transactional_lifetime": 60.0, "retry_base": 300.0})
    mid = enqueue(rig.store, rig.tenant, ["brief@other.test"])
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"expired": 1})
    [row] = rig.store.admin.recipients(mid)
    assert row["last_text"].startswith("lifetime expired; last error: 451 4.3.0")
    assert rig.store.queue.pending_count() == 0  # final: nothing will report it again
    assert rig.store.events.counts() == {"message.received": 1,
                                         "recipient.accepted": 1, "message.expired": 1}
    assert_accounting(rig.store)


def test_an_outcome_the_store_cannot_take_is_one_line_and_written_later(rig_factory, sinks):
    """Disk full while recording a delivery: one log line (no traceback, no deferral written
    for mail that went out); the outcome is kept and written once the store takes it, and the
    message is never sent again (issue #15)."""
    rig = rig_factory()
    real, failed = rig.store.queue.record, []

    async def full_once(results):
        if not failed:
            failed.append(results)
            raise StorageFull("database or disk is full")
        await real(results)

    rig.store.queue.record = full_once
    with capture_log("helo_smtp.delivery") as log:
        mid = enqueue(rig.store, rig.tenant, ["twice@other.test"])
        rig.workers.wake()
        wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
    [line] = log.kv("record_deferred")
    assert line["message_id"] == mid and line["error"] == "StorageFull"
    assert not [r for r in log.records if r.exc_info]
    assert len(sinks[2].h.messages) == 1  # sent once; its outcome written late
    [row] = rig.store.admin.recipients(mid)
    assert row["attempts"] == 1
    assert_accounting(rig.store)
