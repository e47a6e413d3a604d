"""Broadcast scenarios on the whole relay: real submission, real delivery to the sinks, the
real HTTP side. The accounting invariant is checked after each relay stops."""

from __future__ import annotations

from typing import Any

import pytest

from helo_smtp.store import Store
from tests.support.accounting import assert_accounting
from tests.support.relay import RelayHandle

DELIVERY = {"connect_timeout": 2.0, "command_timeout": 2.0, "data_timeout": 3.0,
            "total_deadline": 8.0, "idle_connection_seconds": 5.0, "lease_seconds": 30.0}


@pytest.fixture
def broadcast_relay(relay_factory, sinks, dns):
    """``broadcast_relay(**config_overrides)`` -> a started RelayHandle (delivery on)."""
    made: list[RelayHandle] = []

    def start(**overrides: Any) -> RelayHandle:
        overrides["delivery"] = {**DELIVERY, **overrides.get("delivery", {})}
        relay = relay_factory(**overrides)
        made.append(relay)
        return relay

    yield start
    for relay in made:
        relay.stop()
        store = Store.open(relay.cfg.server.database)
        try:
            assert_accounting(store)
        finally:
            store.close()


def http_base(relay: RelayHandle) -> str:
    """Where the relay's HTTP side really listens (the config's public_url is a placeholder:
    tokens do not depend on it)."""
    return f"http://127.0.0.1:{relay.relay.http_port}"


def local_url(relay: RelayHandle, url: str) -> str:
    """A URL from a delivered message, pointed at the relay's real HTTP port."""
    public = relay.cfg.http.public_url.rstrip("/")
    assert url.startswith(public + "/"), url
    return http_base(relay) + url[len(public):]
