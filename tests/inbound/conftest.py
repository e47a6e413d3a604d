"""Fixtures for the inbound tests: a relay that accepts but does not deliver, so every accepted
message stays in the queue for assertions."""

from __future__ import annotations

import pytest

# Tests leave client sessions open mid-transaction; drain would wait the whole grace for them.
TEARDOWN_GRACE = 0.2


@pytest.fixture
def make_relay(relay_factory):
    """``make_relay(limits={...}, server={...})``: a non-delivering relay with overrides."""
    made = []

    def make(**overrides):
        handle = relay_factory(deliver=False, **overrides)
        made.append(handle)
        return handle
    yield make
    for handle in made:
        handle.stop(grace=TEARDOWN_GRACE)


@pytest.fixture
def relay(make_relay):
    return make_relay()
