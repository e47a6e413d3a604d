"""Send limits per channel (SPEC §15): past ``hourly_limit`` / ``daily_limit`` new mail gets
``451 4.7.1 rate_limited``, nothing of it is kept, and the counters live in the database so
every relay on it shares them."""

from __future__ import annotations

from helo_smtp.runtime import metrics
from helo_smtp.store.limits import window_start
from tests.support.metricvalue import sample
from tests.support.submit import Submitter, build

LIMITED = "451 4.7.1 rate_limited: channel send limit reached"


def _try(s: Submitter, rcpts: list[str]) -> str:
    """One message; the DATA reply as one line (accepted or not)."""
    sender = s.relay.tenant.sender
    assert s.s.mail(sender)[0] == 250
    for r in rcpts:
        assert s.s.rcpt(r)[0] == 250
    code, text = s.s.data(build(sender, rcpts))
    return f"{code} {text.decode()}"


def test_hourly_limit_refuses_with_451_and_keeps_nothing(relay, client_ctx):
    ch = relay.tenant.channel
    relay.store.limits.set(ch.id, hourly=3)
    with Submitter(relay, client_ctx) as s:
        assert _try(s, ["a@example.test", "b@example.test"]).startswith("250 ")
        assert _try(s, ["c@example.test"]).startswith("250 ")
        assert _try(s, ["d@example.test"]) == LIMITED  # the 4th recipient-send this hour
        assert _try(s, ["e@example.test", "f@example.test"]) == LIMITED
    assert relay.store.queue.accounting() == {"queued": 3}
    assert relay.store.events.counts() == {"message.received": 2,
                                             "recipient.accepted": 3}
    [hour, day] = relay.store.limits.usage(ch.id)
    assert (hour.period, hour.limit, hour.used) == ("hour", 3, 3)
    assert (day.period, day.limit, day.used) == ("day", None, 0)
    assert sample(metrics.SEND_LIMIT_USED, channel=ch.id, period="hour") == 3
    assert sample(metrics.SEND_LIMIT, channel=ch.id, period="hour") == 3
    assert sample(metrics.SEND_LIMIT_REFUSED, "_total", channel=ch.id, period="hour") == 2


def test_daily_limit_and_clearing_it(relay, client_ctx):
    ch = relay.tenant.channel
    relay.store.limits.set(ch.id, hourly=100, daily=1)
    with Submitter(relay, client_ctx) as s:
        assert _try(s, ["a@example.test"]).startswith("250 ")
        assert _try(s, ["b@example.test"]) == LIMITED
        relay.store.limits.set(ch.id, daily=0)  # 0 clears the limit
        assert _try(s, ["c@example.test"]).startswith("250 ")
    assert relay.store.queue.accounting() == {"queued": 2}


def test_a_new_window_starts_the_count_again(relay, client_ctx):
    ch = relay.tenant.channel
    relay.store.limits.set(ch.id, hourly=1)
    with Submitter(relay, client_ctx) as s:
        assert _try(s, ["a@example.test"]).startswith("250 ")
        assert _try(s, ["b@example.test"]) == LIMITED
        # move the stored window back one hour: the count belongs to a past window now
        relay.store.db.write(lambda c: c.execute(
            "UPDATE send_counters SET start = start - 3600"))
        assert _try(s, ["c@example.test"]).startswith("250 ")


def test_limits_hold_across_relays_on_one_database(relay_factory, client_ctx):
    """Two nodes (two relays on one database): the counter is shared, so together they
    accept no more than the limit (on PostgreSQL: the cluster-wide case)."""
    a = relay_factory(deliver=False)
    b = relay_factory(deliver=False, tenant=False)
    b.tenant = a.tenant
    a.store.limits.set(a.tenant.channel.id, hourly=3)
    with Submitter(a, client_ctx) as sa, Submitter(b, client_ctx) as sb:
        assert _try(sa, ["a@example.test", "b@example.test"]).startswith("250 ")
        assert _try(sb, ["c@example.test"]).startswith("250 ")
        assert _try(sb, ["d@example.test"]) == LIMITED
        assert _try(sa, ["e@example.test"]) == LIMITED
    assert a.store.queue.accounting() == {"queued": 3}
    [hour, _] = a.store.limits.usage(a.tenant.channel.id)
    assert hour.used == 3 and hour.resets_at == window_start("hour", hour.resets_at - 1) + 3600
    assert hour.resets_at % 3600 == 0  # windows are UTC hours


def test_the_session_goes_on_after_a_refusal(relay, client_ctx):
    """451 is transient: the client may RSET and try another message in the same session."""
    relay.store.limits.set(relay.tenant.channel.id, hourly=1)
    with Submitter(relay, client_ctx) as s:
        assert _try(s, ["a@example.test"]).startswith("250 ")
        assert _try(s, ["b@example.test"]) == LIMITED
        assert s.s.noop()[0] == 250
        assert _try(s, ["c@example.test"]) == LIMITED  # same session, still answered
