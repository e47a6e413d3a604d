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


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory, dns_server, mx_port, server_cert):
    """One non-delivering relay for a module's parametrized cases; tests using it must not
    depend on what other cases left in the store."""
    from tests.support.relay import RelayHandle, base_config

    cfg = base_config(tmp_path_factory.mktemp("relay"), dns_port=dns_server.port,
                      mx_port=mx_port, cert=server_cert)
    handle = RelayHandle(cfg, deliver=False)
    yield handle
    handle.stop(grace=TEARDOWN_GRACE)
