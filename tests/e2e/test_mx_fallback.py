"""The first MX is down: the same attempt goes on to the second MX, and only the host that
answered is recorded."""

from __future__ import annotations

from tests.support.net import MX_IPS


def test_first_mx_down_second_mx_delivers(scenario, sinks):
    sinks[0].h.on_connect = "drop"  # mx1 (preference 10) closes every connection at once
    sc = scenario()
    mid = sc.submit(["eve@example.test", "fay@example.test"])
    sc.wait(mid, delivered=2)

    assert sinks[0].h.connections and not sinks[0].h.messages
    assert [m["rcpt_tos"] for m in sinks[1].h.messages] == [
        ["eve@example.test", "fay@example.test"]]
    attempts = sc.attempts(mid)
    assert {(a["remote_host"], a["remote_ip"], a["outcome"]) for a in attempts} == {
        ("mx2.example.test", MX_IPS[1], "delivered")}
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 2, "delivery.delivered": 2}
