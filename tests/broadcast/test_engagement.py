"""Broadcast engagement counters in the store: unique per recipient, traced to events."""

from __future__ import annotations

from helo_smtp.models import MailType, SuppressionReason
from helo_smtp.store.broadcasts import COUNTERS
from tests.http.helpers import enqueue
from tests.support.relay import make_tenant

A, B, C = "ann@example.test", "bob@other.test", "cy@example.test"

EVENT_FOR_COUNTER = {"unique_opens": "message.opened", "unique_clicks": "link.clicked",
                     "unsubscribes": "recipient.unsubscribed",
                     "complaints": "recipient.complained"}


def bc(store, msg) -> dict:
    return store.broadcasts.get(store.queue.load_message(msg.id).broadcast_id)


def events_of(store, broadcast_id: str, type_: str) -> int:
    return sum(1 for e in store.events.list(type_=type_, limit=100_000)
               if e["broadcast_id"] == broadcast_id)


async def test_counters_equal_unique_events_across_messages_of_one_broadcast(store):
    t = make_tenant(store)
    m1 = await enqueue(store, t, [A, B], name="weekly")
    m2 = await enqueue(store, t, [C], name="weekly")
    assert m1 is not m2 and bc(store, m1)["id"] == bc(store, m2)["id"]
    e = store.engagement
    for _ in range(3):
        await e.open(m1.id, A, user_agent="ua")
    await e.open(m1.id, B)
    await e.open(m2.id, C)
    await e.click(m1.id, A, url="https://x.test/1")
    await e.click(m1.id, A, url="https://x.test/2")  # a second link: same recipient, once
    await e.unsubscribe(m2.id, C)
    assert e.complaint(m1.id, B).first is True
    assert e.complaint(m1.id, B).first is False
    b = bc(store, m1)
    assert (b["accepted"], b["unique_opens"], b["unique_clicks"], b["unsubscribes"],
            b["complaints"]) == (3, 3, 1, 1, 1)
    for counter, type_ in EVENT_FOR_COUNTER.items():
        assert counter in COUNTERS
        assert b[counter] == events_of(store, b["id"], type_), counter
    assert [(r["kind"], r["count"]) for r in e.get(m1.id, A)] == [("click", 2), ("open", 3)]


async def test_events_carry_tags_and_metadata(store):
    t = make_tenant(store)
    msg = await enqueue(store, t, [A], tags=["a", "b"], metadata={"k": "v"})
    await store.engagement.open(msg.id, A)
    await store.engagement.click(msg.id, A, url="https://x.test/")
    await store.engagement.unsubscribe(msg.id, A)
    store.engagement.complaint(msg.id, A)
    for type_ in EVENT_FOR_COUNTER.values():
        (ev,) = store.events.list(message_id=msg.id, type_=type_)
        assert (ev["recipient"], ev["channel_id"]) == (A, t.channel.id)
        assert ev["data"]["tags"] == ["a", "b"] and ev["data"]["metadata"] == {"k": "v"}


async def test_first_hit_flags_and_case_insensitive_recipient(store):
    t = make_tenant(store)
    msg = await enqueue(store, t, [A])
    first = await store.engagement.open(msg.id, A.upper())
    again = await store.engagement.open(msg.id, A)
    assert (first.first, first.count, again.first, again.count) == (True, 1, False, 2)
    assert first.recipient == A


async def test_unknown_message_or_recipient_records_nothing(store):
    t = make_tenant(store)
    msg = await enqueue(store, t, [A])
    assert await store.engagement.open(msg.id, "stranger@x.test") is None
    assert await store.engagement.unsubscribe("0190a0a0-0000-7000-8000-000000000000", A) is None
    assert store.engagement.complaint(msg.id, "stranger@x.test") is None
    assert store.engagement.get(msg.id) == []
    assert store.suppressions.list(t.channel.id) == []


async def test_unsubscribe_and_complaint_suppress_on_the_channel(store):
    t = make_tenant(store)
    msg = await enqueue(store, t, [A, B])
    await store.engagement.unsubscribe(msg.id, A)
    store.engagement.complaint(msg.id, B)
    sup = {s.address: s.reason for s in store.suppressions.list(t.channel.id)}
    assert sup == {A: SuppressionReason.UNSUBSCRIBE, B: SuppressionReason.COMPLAINT}


async def test_transactional_engagement_touches_no_broadcast(store):
    t = make_tenant(store)
    msg = await enqueue(store, t, [A], mail_type=MailType.TRANSACTIONAL)
    hit = await store.engagement.open(msg.id, A)
    assert hit.first and hit.broadcast_id is None
    assert store.broadcasts.list() == []
    assert store.events.counts(msg.id)["message.opened"] == 1
