"""Fixtures for the inbound tests: a relay that accepts but does not deliver, so every accepted
message stays in the queue for assertions."""

from __future__ import annotations

import pytest


@pytest.fixture
def relay(relay_factory):
    return relay_factory(deliver=False)


@pytest.fixture
def make_relay(relay_factory):
    """``make_relay(limits={...}, server={...})``: a non-delivering relay with overrides."""
    def make(**overrides):
        return relay_factory(deliver=False, **overrides)
    return make
