"""Fixtures for events, webhooks and bounce intake: a relay with webhooks allowed on loopback
(``allow_private``: the only way a test may reach 127.0.0.1) and fast retries, and a real
aiohttp webhook receiver."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.webhookreceiver import WebhookReceiver

FAST_WEBHOOKS = {"allow_private": True, "first_retry_seconds": 0.2, "poll_seconds": 0.05,
                 "timeout_seconds": 2.0}
DELIVERY = {"connect_timeout": 5.0, "command_timeout": 5.0, "data_timeout": 5.0,
            "total_deadline": 15.0, "idle_connection_seconds": 5.0, "lease_seconds": 30.0}


@pytest.fixture
def receiver():
    made: list[WebhookReceiver] = []

    def make(**kw: Any) -> WebhookReceiver:
        rx = WebhookReceiver(**kw).start()
        made.append(rx)
        return rx

    yield make
    for rx in made:
        rx.stop()


@pytest.fixture
def hooked_relay(relay_factory, sinks, dns):
    """``hooked_relay(**overrides)`` -> a delivering relay with fast, loopback-allowed
    webhooks."""

    def start(**overrides: Any):
        overrides["webhooks"] = {**FAST_WEBHOOKS, **overrides.get("webhooks", {})}
        overrides["delivery"] = {**DELIVERY, **overrides.get("delivery", {})}
        return relay_factory(**overrides)

    return start


BOUNCE_DOMAIN = "bounces.relay.test"
LISTENERS = [
    {"name": "submission", "address": "127.0.0.1", "port": 0, "tls": "starttls",
     "mail_type": "header"},
    {"name": "broadcast", "address": "127.0.0.1", "port": 0, "tls": "starttls",
     "mail_type": "broadcast"},
    {"name": "bounces", "address": "127.0.0.1", "port": 0, "tls": "starttls",
     "mail_type": "bounces"},
]


@pytest.fixture
def bounce_relay(hooked_relay):
    """``bounce_relay(**overrides)`` -> a delivering relay with ``[bounces] domain`` set (VERP
    return paths) and a ``bounces`` listener."""

    def start(**overrides: Any):
        overrides.setdefault("bounces", {"domain": BOUNCE_DOMAIN, "secret": "bounce-key"})
        overrides.setdefault("listeners", LISTENERS)
        return hooked_relay(**overrides)

    return start
