"""A 4xx at every MX defers the recipient on the retry ladder (message delayed); when the
retry comes due (time moved by the store, not slept) it is delivered."""

from __future__ import annotations

import time


def test_4xx_then_delivered_on_retry(scenario, sinks):
    for s in sinks[:2]:
        s.h.rcpt_replies["gil@example.test"] = "451 4.3.0 Temporary local problem"
    sc = scenario()
    mid = sc.submit(["gil@example.test"])
    sc.wait(mid, deferred=1)

    [row] = sc.store.admin.recipients(mid)
    assert (row["attempts"], row["last_code"], row["last_status"]) == (1, 451, "4.3.0")
    assert row["last_host"] == "mx2.example.test"  # mx1 was tried first, then the next MX
    base = sc.relay.cfg.delivery.retry_base
    assert time.time() + 0.7 * base < row["next_attempt_at"] <= time.time() + base
    assert sc.store.admin.message(mid)["status"] == "delayed"
    assert [c[1] for c in sinks[0].h.commands].count("RCPT") == 1
    assert [c[1] for c in sinks[1].h.commands].count("RCPT") == 1

    for s in sinks[:2]:
        s.h.rcpt_replies.clear()
    assert sc.retry_now() == 1
    sc.wait(mid, delivered=1)
    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [["gil@example.test"]]
    [row] = sc.store.admin.recipients(mid)
    assert row["attempts"] == 2
    assert sc.store.admin.message(mid)["status"] == "accepted"
    assert [a["outcome"] for a in sc.attempts(mid)] == ["deferred", "delivered"]
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 1, "delivery.deferred": 1,
                           "delivery.delivered": 1}
