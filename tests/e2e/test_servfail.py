"""SERVFAIL defers (category dns, 4.4.3), is never cached, and the recipient is delivered
once DNS answers again on a later retry."""

from __future__ import annotations

from tests.support.net import MX_IPS
from tests.support.waiting import wait_for


def test_servfail_defers_then_recovers(scenario, sinks, dns):
    dns.servfail.add("flaky.test")
    sc = scenario()
    mid = sc.submit(["quinn@flaky.test"])
    sc.wait(mid, deferred=1)
    [row] = sc.store.admin.recipients(mid)
    assert (row["last_status"], row["category"], row["last_code"]) == ("4.4.3", "dns", None)
    assert sc.store.admin.message(mid)["status"] == "delayed"

    sc.retry_now()  # still failing: a second deferral, attempts grow
    wait_for(lambda: sc.store.admin.recipients(mid)[0]["attempts"] == 2)
    assert not any(s.h.connections for s in sinks)

    dns.servfail.discard("flaky.test")
    dns.add("flaky.test", "MX", "10 mx.flaky.test.")
    dns.add("mx.flaky.test", "A", MX_IPS[2])
    sc.retry_now()
    sc.wait(mid, delivered=1)
    assert [m["rcpt_tos"] for m in sinks[2].h.messages] == [["quinn@flaky.test"]]
    assert [a["outcome"] for a in sc.attempts(mid)] == ["deferred", "deferred", "delivered"]
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 1, "delivery.deferred": 2,
                           "delivery.delivered": 1}
