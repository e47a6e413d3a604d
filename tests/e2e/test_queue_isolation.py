"""A broadcast backlog of thousands of messages to a slow destination does not delay
transactional mail: the transactional message is delivered while nearly all broadcast mail
is still queued (the queues have separate workers, budgets and claims)."""

from __future__ import annotations

from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.support.net import MX_IPS
from tests.support.outbound import bulk_enqueue
from tests.support.waiting import wait_for

BACKLOG = 3000


def test_broadcast_backlog_never_delays_transactional(scenario, sinks, dns):
    dns.add("slow.test", "MX", "10 mx.slow.test.")
    dns.add("mx.slow.test", "A", MX_IPS[3])
    sinks[3].h.stall = {"DATA": 0.2}  # a slow receiver: a few messages a second at most
    sc = scenario(pools={"broadcast": {"max_connections": 2, "per_domain_connections": 2}})
    bulk_enqueue(sc.store, sc.relay.tenant, BACKLOG, lambda i: f"fan{i}@slow.test",
                 MailType.BROADCAST)
    sc.relay.relay.wake(MailType.BROADCAST)
    wait_for(lambda: sinks[3].h.messages, what="the broadcast backlog to start flowing")

    mid = sc.submit(["urgent@other.test"], subject="Your password reset")
    sc.wait(mid, delivered=1)
    still_queued = sc.store.queue.pending_count(MailType.BROADCAST)
    assert still_queued > 0.9 * BACKLOG, still_queued
    assert [m["rcpt_tos"] for m in sinks[2].h.messages] == [["urgent@other.test"]]

    sc.relay.stop()  # in-flight broadcast deliveries finish; the rest stays queued
    broadcast_delivered = len(sinks[3].h.messages)
    store = Store.open(sc.relay.cfg.server.database)
    try:
        assert store.queue.pending_count(MailType.BROADCAST) == BACKLOG - broadcast_delivered
        assert store.events.counts() == {"message.received": BACKLOG + 1,
                                         "recipient.accepted": BACKLOG + 1,
                                         "delivery.delivered": broadcast_delivered + 1}
    finally:
        store.close()
