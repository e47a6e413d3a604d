"""The SSRF guard at connect time: a webhook whose name resolves (through the test DNS
server) to loopback is refused when ``allow_private`` is off, and delivered when it is on."""

from __future__ import annotations

from tests.support.submit import submit
from tests.support.waiting import wait_for


def test_name_resolving_to_loopback_is_refused(hooked_relay, receiver, client_ctx, dns):
    dns.add("hooks.example.test", "A", "127.0.0.1")
    relay = hooked_relay(webhooks={"allow_private": False})
    rx = receiver()
    url = f"http://hooks.example.test:{rx.port}/hooks"
    # created straight in the store: the name is public-looking, only its address is not
    ep, rx.secret = relay.store.webhooks.create(relay.tenant.channel.id, url, ["accepted"])
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: relay.store.webhooks.deliveries(ep.id, "failed"), what="refused")
    [row] = relay.store.webhooks.deliveries(ep.id)
    assert row["last_error"].startswith("blocked") and row["attempts"] == 1
    assert rx.requests == []


def test_same_name_allowed_with_allow_private(hooked_relay, receiver, client_ctx, dns):
    dns.add("hooks.example.test", "A", "127.0.0.1")
    relay = hooked_relay()
    rx = receiver()
    url = f"http://hooks.example.test:{rx.port}/hooks"
    _ep, rx.secret = relay.store.webhooks.create(relay.tenant.channel.id, url, ["accepted"])
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: rx.types() == ["accepted"], what="delivered through the name")


def test_ip_literal_refused_at_send_time(hooked_relay, receiver, client_ctx):
    relay = hooked_relay(webhooks={"allow_private": False})
    rx = receiver()
    ep, rx.secret = relay.store.webhooks.create(relay.tenant.channel.id, rx.url, ["accepted"])
    submit(relay, client_ctx, ["ann@example.test"])
    wait_for(lambda: relay.store.webhooks.deliveries(ep.id, "failed"), what="refused")
    assert rx.requests == []
