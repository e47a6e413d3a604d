"""A paced broadcast drains through the whole relay without claim/release churn, on both
backends (on PostgreSQL the tokens come from the cluster's buckets, ``store/throttle.py``):
every row is leased once and none is given back. Counted, not timed."""

from __future__ import annotations

from helo_smtp.models import MailType
from helo_smtp.runtime import metrics
from tests.support.metricvalue import sample
from tests.support.outbound import bulk_enqueue, wait_states

BC = MailType.BROADCAST.value
N = 8


def _counts() -> tuple[float, float]:
    return (sample(metrics.QUEUE_CLAIMED, "_total", mail_type=BC),
            sum(sample(metrics.QUEUE_RELEASED, "_total", mail_type=BC, reason=r)
                for r in ("line_full", "cluster_busy")))


def test_a_paced_broadcast_is_leased_once_per_row_and_never_given_back(broadcast_relay, sinks):
    relay = broadcast_relay(pools={"broadcast": {"rate": 20.0, "per_domain_rate": 4.0}})
    before = _counts()
    ids = bulk_enqueue(relay.store, relay.tenant, N, lambda i: f"fan{i}@other.test",
                       MailType.BROADCAST)
    relay.relay.wake(MailType.BROADCAST)
    for mid in ids:
        wait_states(relay.store, mid, lambda c: c == {"delivered": 1})
    claimed, released = (a - b for a, b in zip(_counts(), before, strict=True))
    assert (claimed, released) == (N, 0)
    got = sorted(m["rcpt_tos"][0] for s in sinks for m in s.h.messages)
    assert got == sorted(f"fan{i}@other.test" for i in range(N))
