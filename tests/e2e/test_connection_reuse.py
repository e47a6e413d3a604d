"""Messages to the same host reuse one connection (RSET between transactions) while it is
idle for less than ``idle_connection_seconds``."""

from __future__ import annotations


def test_connection_is_reused_across_messages(scenario, sinks):
    sc = scenario()
    ids = []
    with sc.session() as s:
        for i in range(3):
            ids.append(s.send([f"u{i}@example.test"]))
            sc.wait(ids[-1], delivered=1)  # one after the other: each finds the idle one

    h = sinks[0].h
    assert len(h.messages) == 3
    assert len(h.connections) == 1
    assert len({m["peer"] for m in h.messages}) == 1
    assert [c[1] for c in h.commands].count("EHLO") == 1
    assert sc.counts() == {"message.received": 3, "recipient.accepted": 3, "delivery.delivered": 3}
