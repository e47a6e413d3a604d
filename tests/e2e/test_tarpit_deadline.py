"""A tarpit that answers every command just inside the per-command timeout is cut at the
total deadline: the recipients are deferred (stage deadline), the connection dropped."""

from __future__ import annotations

from tests.support.net import MX_IPS


def test_tarpit_is_cut_at_the_deadline(scenario, sinks, dns):
    dns.add("tarpit.test", "MX", "10 mx.tarpit.test.")
    dns.add("mx.tarpit.test", "A", MX_IPS[3])
    sinks[3].h.stall = {"RCPT": 0.4}  # each reply well in time, all of them far too slow
    sc = scenario(delivery={"command_timeout": 2.0, "total_deadline": 1.0})
    rcpts = [f"t{i}@tarpit.test" for i in range(6)]
    mid = sc.submit(rcpts)
    sc.wait(mid, deferred=6)

    assert not sinks[3].h.messages
    assert {(a["stage"], a["outcome"], a["status"]) for a in sc.attempts(mid)} == {
        ("deadline", "deferred", "4.4.2")}
    assert {r["category"] for r in sc.store.admin.recipients(mid)} == {"connection"}
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 6, "delivery.deferred": 6}
