"""Send-limit counters in the accept transaction (both backends): add, check, roll back."""

from __future__ import annotations

import asyncio
import time

import pytest

from helo_smtp.errors import RateLimited
from helo_smtp.models import MailType, NewMessage, uuid7
from helo_smtp.store.limits import window_start
from tests.support.relay import make_tenant


def _send(store, t, n: int, now: float) -> str:
    mid = uuid7()
    msg = NewMessage(mid, t.account.id, t.channel.id, MailType.TRANSACTIONAL, t.sender,
                     [f"r{i}@example.test" for i in range(n)], [], b"Subject: x\r\n\r\nhi\r\n",
                     reply=f"250 2.0.0 Ok: queued as {mid}", created_at=now)
    return asyncio.run(store.queue.enqueue(msg)).message_id


def test_a_refused_message_leaves_no_trace_and_says_when_to_retry(store):
    t = make_tenant(store)
    store.limits.set(t.channel.id, hourly=5, daily=5)
    now = window_start("day", time.time()) + 3600.5  # 01:00 UTC: the next hour is the same day
    _send(store, t, 4, now)
    with pytest.raises(RateLimited) as refused:
        _send(store, t, 2, now)  # 6 > 5: the whole message is refused, not cut
    assert 0 < refused.value.retry_after <= 3600
    assert refused.value.retry_after == pytest.approx(window_start("hour", now) + 3600 - now)
    assert store.queue.accounting() == {"queued": 4}
    assert [(u.period, u.used) for u in store.limits.usage(t.channel.id, now)] == [
        ("hour", 4), ("day", 4)]  # the refused charge was rolled back with the message
    _send(store, t, 1, now)
    with pytest.raises(RateLimited):
        _send(store, t, 1, now + 3600)  # a new hour, but the day's 5 are used
    assert store.queue.accounting() == {"queued": 5}


def test_no_limit_means_no_counter_rows(store):
    t = make_tenant(store)
    _send(store, t, 3, time.time())
    assert store.db.read(lambda c: c.execute("SELECT count(*) FROM send_counters")
                         .fetchone()[0]) == 0
