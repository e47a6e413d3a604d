"""A paced drain sleeps (issue #23): a paced worker claims only what its pool's tokens let
start now, a group that must wait for its domain waits in line in memory, and nothing is
claimed and given back over and over. Counted, not timed: the claims and releases of a drain
(``helo_queue_claimed`` / ``helo_queue_released``, and the worker's ``claimed`` log lines)."""

from __future__ import annotations

from helo_smtp.models import MailType
from helo_smtp.runtime import metrics
from tests.support.accounting import assert_accounting
from tests.support.metricvalue import sample
from tests.support.outbound import capture_log, enqueue, wait_states

BC = MailType.BROADCAST.value


def _counts() -> tuple[float, float]:
    claimed = sample(metrics.QUEUE_CLAIMED, "_total", mail_type=BC)
    released = sum(sample(metrics.QUEUE_RELEASED, "_total", mail_type=BC, reason=r)
                   for r in ("line_full", "cluster_busy"))
    return claimed, released


def _drain(rig, n: int, domain: str) -> list[str]:
    ids = [enqueue(rig.store, rig.tenant, [f"fan{i}@{domain}"], MailType.BROADCAST)
           for i in range(n)]
    rig.workers.wake()
    for mid in ids:
        wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
    return ids


def test_a_domain_paced_drain_claims_each_row_once_and_gives_none_back(rig_factory, sinks):
    """Per-domain rate 4/s, 10 messages to one domain: 4 go at once, the rest wait in line;
    before, 6 were released and claimed again several times each."""
    rig = rig_factory(pools={"broadcast": {"rate": 0.0, "per_domain_rate": 4.0}})
    before = _counts()
    with capture_log("helo_smtp.delivery") as log:
        ids = _drain(rig, 10, "other.test")
    claimed, released = (a - b for a, b in zip(_counts(), before, strict=True))
    assert (claimed, released) == (10, 0)
    assert not log.kv("held_back")
    assert {r["attempts"] for mid in ids for r in rig.store.admin.recipients(mid)} == {1}
    assert rig.store.events.counts() == {"message.received": 10, "recipient.accepted": 10,
                                             "delivery.delivered": 10}
    assert_accounting(rig.store)


def test_a_pool_paced_drain_claims_no_more_than_the_pool_can_start(rig_factory, sinks, dns):
    """Pool rate 3/s (bucket of 3), 9 messages to nine domains: no claim asks for or gets
    more rows than the bucket's free tokens, and no row is claimed twice."""
    for i in range(9):
        dns.add(f"d{i}.test", "MX", f"10 mx{i % 5 + 1}.example.test.")
    rig = rig_factory(pools={"broadcast": {"rate": 3.0, "per_domain_rate": 0.0}})
    before = _counts()
    with capture_log("helo_smtp.delivery") as log:
        _drain_spread(rig, 9)
    claims = [c for c in log.kv("claimed") if c["mail_type"] == BC and int(c["rows"]) > 0]
    assert claims and all(int(c["limit"]) <= 3 and int(c["rows"]) <= 3 for c in claims)
    claimed, released = (a - b for a, b in zip(_counts(), before, strict=True))
    assert (claimed, released) == (9, 0)
    assert_accounting(rig.store)


def _drain_spread(rig, n: int) -> None:
    ids = [enqueue(rig.store, rig.tenant, [f"r{i}@d{i}.test"], MailType.BROADCAST)
           for i in range(n)]
    rig.workers.wake()
    for mid in ids:
        wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
