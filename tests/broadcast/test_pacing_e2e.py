"""A paced broadcast goes out no faster than the pool rate and the per-domain rate, while a
transactional message sent in the middle is delivered at once (the transactional pool is
unpaced and has its own worker).

Sizes are chosen so both buckets bind yet the test stays short: 15 recipients, 6 on one "hot"
domain and 3 on each of three "cold" ones, at 5/s for the pool and 2/s per domain. Each bucket
starts with one second's burst, so the pool needs at least (15 - 5) / 5 = 2 s and the hot
domain (6 - 2) / 2 = 2 s, counted from the moment the mail was queued (no token can be taken
earlier: a hard bound, whatever the load). Unpaced, the relay delivers these 15 in a fraction
of that, so the bounds tell paced from unpaced.
"""
from __future__ import annotations

import time

from helo_smtp.models import MailType
from tests.support.outbound import bulk_enqueue, wait_states
from tests.support.submit import submit
from tests.support.waiting import wait_for

RATE, PER_DOMAIN = 5.0, 2.0
HOT = "hot.test"
COLD = [f"cold{i}.test" for i in range(3)]
RCPTS = [f"h{i}@{HOT}" for i in range(6)] + [f"c{i}@{d}" for d in COLD for i in range(3)]
SPAN_SLACK = 0.5  # the first deliveries carry DNS and connection setup, later ones not


def min_time(n: int, rate: float) -> float:
    """The shortest time ``n`` sends can take from a full one-second bucket."""
    return (n - rate) / rate


def test_broadcast_is_paced_and_transactional_is_not(broadcast_relay, sinks, dns, client_ctx):
    for i, d in enumerate([HOT, *COLD]):
        dns.add(d, "MX", f"10 mx{i % 5 + 1}.example.test.")
    relay = broadcast_relay(pools={"broadcast": {"rate": RATE, "per_domain_rate": PER_DOMAIN}})
    start = time.time()
    ids = bulk_enqueue(relay.store, relay.tenant, len(RCPTS), lambda i: RCPTS[i],
                       MailType.BROADCAST)
    relay.relay.wake(MailType.BROADCAST)
    wait_for(lambda: any(s.h.messages for s in sinks), what="the broadcast to start")

    mid = submit(relay, client_ctx, ["urgent@example.test"], subject="Password reset")
    wait_states(relay.store, mid, lambda c: c == {"delivered": 1})
    assert relay.store.queue.pending_count(MailType.BROADCAST) > 0  # it overtook the broadcast

    wait_for(lambda: relay.store.queue.pending_count(MailType.BROADCAST) == 0, timeout=20,
             what="the whole broadcast delivered")
    got = {m["rcpt_tos"][0]: m["t"] for s in sinks for m in s.h.messages}
    assert sorted(got) == sorted([*RCPTS, "urgent@example.test"])
    every = sorted(got[r] for r in RCPTS)
    hot = sorted(got[r] for r in RCPTS if r.endswith("@" + HOT))
    # Tokens cannot be taken before the mail was queued: hard lower bounds from the start...
    assert every[-1] - start >= min_time(len(every), RATE)
    assert hot[-1] - start >= min_time(len(hot), PER_DOMAIN)
    # ...and the deliveries themselves are spread out, not held back and then blasted.
    assert every[-1] - every[0] >= SPAN_SLACK * min_time(len(every), RATE)
    assert hot[-1] - hot[0] >= SPAN_SLACK * min_time(len(hot), PER_DOMAIN)

    b = relay.store.broadcasts.get(relay.store.queue.load_message(ids[0]).broadcast_id)
    assert (b["accepted"], b["delivered"], b["deferred"], b["bounced"]) == (15, 15, 0, 0)
    assert relay.store.events.counts() == {"message.received": 16,
                                           "recipient.accepted": 16, "delivery.delivered": 16}
