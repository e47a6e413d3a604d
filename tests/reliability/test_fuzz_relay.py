"""Fuzzing a live relay, modest sizes for the default suite (the chaos run does thousands:
tests/chaos/test_fuzz_long.py). What each property says: tests/reliability/fuzzing.py.
tests/inbound/test_fuzz.py has the simpler random-sequence fuzzer."""

from __future__ import annotations

import pytest

from tests.reliability import fuzzing
from tests.support.figures import record

#: auth failure windows out of the way, so later examples can still log in
OPEN_LIMITS = {"auth_failures_per_ip": 1_000_000, "auth_failures_per_user": 1_000_000}


@pytest.fixture
def fuzz_relay(relay_factory):
    return relay_factory(deliver=False, limits=OPEN_LIMITS)


def test_body_round_trip(relay_factory, sinks, client_ctx):
    relay = relay_factory(limits=OPEN_LIMITS)
    n = fuzzing.run_body_roundtrip(relay, client_ctx, sinks[0], max_examples=40)
    assert n.examples >= 10 and n.accepted > 0
    record("fuzz_body_round_trip", examples=n.examples, relayed=n.accepted,
           nul_rejected=n.rejected)


def test_stateful_sessions(fuzz_relay, client_ctx):
    n = fuzzing.run_stateful(fuzz_relay, client_ctx, max_examples=25, steps=25)
    assert n.examples >= 5 and n.steps > 0
    record("fuzz_stateful_sessions", examples=n.examples, commands=n.steps,
           messages_accepted=n.accepted)


def test_envelope_strings(fuzz_relay, client_ctx):
    n = fuzzing.run_envelopes(fuzz_relay, client_ctx, max_examples=100)
    assert n.examples >= 20
    record("fuzz_envelope_strings", examples=n.examples, accepted=n.accepted)
