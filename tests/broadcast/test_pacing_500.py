"""A broadcast of 500 recipients across five domains, submitted for real on the broadcast
listener (ten messages of 50 recipients, one X-Helo-Broadcast name), goes out no faster than the
pool rate and the per-domain rate, measured from the sinks' receive times; a transactional
message sent in the middle is delivered while the broadcast is still draining.

The rates are small so they bind: 40/s for the pool, 10/s per domain, 100 recipients per
domain (unpaced, this machine delivers these 500 personalized, signed messages at about 100/s,
with up to ~150 in one second). Each bucket starts with one second's burst, so no schedule can
finish before (500 - 40) / 40 = 11.5 s (pool) or (100 - 10) / 10 = 9 s (per domain) after the
first message was queued, and no one-second window can hold more than rate + burst = 2 x rate
deliveries; the window check allows 25% more for sends that bunch up at the sink under load.
"""

from __future__ import annotations

import time

import pytest

from helo_smtp.models import MailType
from tests.support.outbound import wait_states
from tests.support.submit import Submitter, submit
from tests.support.waiting import wait_for

RATE, PER_DOMAIN = 40.0, 10.0
DOMAINS = [f"list{i}.test" for i in range(5)]
RCPTS = [f"r{n}@{d}" for n in range(100) for d in DOMAINS]  # interleaved domains


def busiest_window(times: list[float], width: float = 1.0) -> int:
    """The most deliveries in any window of ``width`` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.slow
def test_500_recipient_broadcast_respects_rates(broadcast_relay, sinks, dns, client_ctx):
    for i, d in enumerate(DOMAINS):
        dns.add(d, "MX", f"10 mx{i + 1}.example.test.")
    relay = broadcast_relay(pools={"broadcast": {"rate": RATE, "per_domain_rate": PER_DOMAIN,
                                                 "per_domain_connections": 4}})
    start = time.time()
    with Submitter(relay, client_ctx, "broadcast") as s:
        ids = [s.send(RCPTS[i:i + 50], subject="November news",
                      headers={"X-Helo-Broadcast": "november-news"})
               for i in range(0, 500, 50)]
    wait_for(lambda: sum(len(s.h.messages) for s in sinks) >= 50, timeout=20,
             what="the broadcast to be under way")
    mid = submit(relay, client_ctx, ["reset@example.test"], subject="Password reset")
    wait_states(relay.store, mid, lambda c: c == {"delivered": 1})
    assert relay.store.queue.pending_count(MailType.BROADCAST) > 0  # overtook the broadcast

    wait_for(lambda: relay.store.queue.pending_count(MailType.BROADCAST) == 0, timeout=90,
             what="the whole broadcast delivered")
    got = {m["rcpt_tos"][0]: m["t"] for s in sinks for m in s.h.messages}
    assert sorted(got) == sorted([*RCPTS, "reset@example.test"])
    every = [got[r] for r in RCPTS]
    assert max(every) - start >= (500 - RATE) / RATE
    assert busiest_window(every) <= 2.5 * RATE
    for d in DOMAINS:
        per = [got[r] for r in RCPTS if r.endswith("@" + d)]
        assert max(per) - start >= (100 - PER_DOMAIN) / PER_DOMAIN
        assert busiest_window(per) <= 2.5 * PER_DOMAIN

    b = relay.store.broadcasts.get(relay.store.queue.load_message(ids[0]).broadcast_id)
    assert b["name"] == "november-news"
    assert (b["accepted"], b["delivered"], b["bounced"], b["suppressed"]) == (500, 500, 0, 0)
    assert relay.store.events.counts() == {"message.received": 11,
                                           "recipient.accepted": 501, "delivery.delivered": 501}
