"""Webhooks end to end: mail submitted over SMTP and delivered to a sink produces events that
a real aiohttp receiver gets as signed POSTs, checked the way a user checks them."""

from __future__ import annotations

import time

from tests.support.submit import submit
from tests.support.waiting import wait_for


def _webhook(relay, url, types=None):
    ep, secret = relay.store.webhooks.create(relay.tenant.channel.id, url, types)
    return ep, secret


def test_delivery_events_arrive_signed(hooked_relay, receiver, client_ctx):
    relay = hooked_relay()
    rx = receiver()
    ep, rx.secret = _webhook(relay, rx.url)
    mid = submit(relay, client_ctx, ["ann@example.test", "bob@example.test"])
    wait_for(lambda: sorted(rx.types()) == ["accepted", "accepted", "delivered", "delivered"],
             what="four events")
    assert rx.bad_signatures == 0
    for req in rx.requests:
        event = req["event"]
        assert req["headers"]["X-Helo-Event-Id"] == event["id"]
        assert req["headers"]["Content-Type"] == "application/json"
        assert event["messageId"] == mid
        assert event["channelId"] == relay.tenant.channel.id
    delivered = [e for e in rx.events if e["type"] == "delivered"]
    assert {e["recipient"] for e in delivered} == {"ann@example.test", "bob@example.test"}
    assert all(e["details"]["code"] == 250 and e["details"]["remoteHost"] == "mx1.example.test"
               for e in delivered)
    assert len({e["id"] for e in rx.events}) == 4  # one id per event
    # the same events, as the log shows them
    listed = relay.store.events.feed(message_id=mid)
    assert sorted(r["uid"] for r in listed) == sorted(e["id"] for e in rx.events)
    wait_for(lambda: {(r["state"], r["attempts"]) for r in relay.store.webhooks.deliveries(
        ep.id)} == {("delivered", 1)}, what="four deliveries recorded")


def test_type_filter(hooked_relay, receiver, client_ctx):
    relay = hooked_relay()
    rx = receiver()
    ep, rx.secret = _webhook(relay, rx.url, ["delivered"])
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: rx.types() == ["delivered"], what="the delivered event")
    assert len(relay.store.webhooks.deliveries(ep.id)) == 1  # no row for 'accepted'


def test_5xx_408_429_and_timeouts_are_retried(hooked_relay, receiver, client_ctx):
    relay = hooked_relay()
    rx = receiver()
    ep, rx.secret = _webhook(relay, rx.url, ["accepted"])
    rx.statuses = [503, 408, 429]
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: rx.types() == ["accepted"], timeout=20, what="the retried event")
    assert [r["event"]["id"] for r in rx.requests].count(rx.events[0]["id"]) == 4
    wait_for(lambda: [(r["state"], r["attempts"], r["last_code"]) for r in
                      relay.store.webhooks.deliveries(ep.id)] == [("delivered", 4, 200)],
             what="recorded after four attempts")


def test_other_4xx_fails_at_once_and_410_disables(hooked_relay, receiver, client_ctx):
    relay = hooked_relay()
    rx = receiver()
    ep, rx.secret = _webhook(relay, rx.url, ["accepted"])
    rx.statuses = [400]
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: relay.store.webhooks.deliveries(ep.id, "failed"), what="failed delivery")
    time.sleep(0.5)  # a retry would come within 0.2 s
    assert len(rx.requests) == 1
    assert relay.store.webhooks.get(ep.id).status == "enabled"

    rx.statuses = [410]
    submit(relay, client_ctx, ["bob@example.test"])
    wait_for(lambda: relay.store.webhooks.get(ep.id).status == "disabled", what="disabled")
    assert relay.store.webhooks.get(ep.id).disabled_reason == "410 Gone"
    submit(relay, client_ctx, ["cy@example.test"])
    time.sleep(0.5)
    assert len(rx.requests) == 2  # nothing goes to a disabled endpoint


def test_gives_up_after_the_window_and_disables_a_failing_endpoint(hooked_relay, receiver,
                                                                    client_ctx):
    relay = hooked_relay(webhooks={"retry_for_seconds": 2.0})
    rx = receiver()
    ep, rx.secret = _webhook(relay, rx.url, ["accepted"])
    rx.statuses = [500] * 1000
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: relay.store.webhooks.deliveries(ep.id, "failed"), timeout=20,
             what="given up")
    [row] = relay.store.webhooks.deliveries(ep.id)
    assert row["last_code"] == 500  # retried (0.2 s doubling) until 2 s had passed
    assert row["last_error"].startswith("gave up")
    assert relay.store.webhooks.get(ep.id).status == "enabled"
    submit(relay, client_ctx, ["bob@example.test"])  # still failing, 2 s after the first
    wait_for(lambda: relay.store.webhooks.get(ep.id).status == "disabled", what="disabled")
    assert relay.store.webhooks.get(ep.id).disabled_reason == "failing for 24 h"


def test_concurrency_cap_per_endpoint(hooked_relay, receiver, client_ctx):
    relay = hooked_relay()
    rx = receiver()
    rx.delay = 0.2
    _ep, rx.secret = relay.store.webhooks.create(relay.tenant.channel.id, rx.url, ["accepted"],
                                                max_concurrency=2)
    submit(relay, client_ctx, [f"r{i}@example.test" for i in range(8)])
    wait_for(lambda: len(rx.events) == 8, timeout=20, what="eight events")
    assert rx.max_active == 2


def test_rotation_signs_with_both_secrets(hooked_relay, receiver, client_ctx):
    relay = hooked_relay()
    rx = receiver()
    ep, old = _webhook(relay, rx.url, ["accepted"])
    new = relay.store.webhooks.rotate_secret(ep.id)
    rx.secret = old  # a receiver not yet switched
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: len(rx.events) == 1, what="verified with the old secret")
    header = rx.requests[0]["headers"]["X-Helo-Signature"]
    assert header.count("v1=") == 2
    rx.secret = new
    relay.store.webhooks.test(ep.id)
    wait_for(lambda: len(rx.events) == 2, what="verified with the new secret")
    assert rx.events[1]["type"] == "test"
