"""The long fuzzing runs behind the figures in docs/reliability.md (properties:
tests/reliability/fuzzing.py). Sizes from ``$HELO_CHAOS_EXAMPLES`` (default 2000)."""

from __future__ import annotations

import os

import pytest

from tests.reliability import fuzzing
from tests.reliability.test_fuzz_relay import OPEN_LIMITS
from tests.support.figures import record

pytestmark = pytest.mark.chaos

EXAMPLES = int(os.environ.get("HELO_CHAOS_EXAMPLES", "2000"))


def test_body_round_trip_long(relay_factory, sinks, client_ctx):
    relay = relay_factory(limits=OPEN_LIMITS)
    n = fuzzing.run_body_roundtrip(relay, client_ctx, sinks[0], max_examples=EXAMPLES)
    record("fuzz_body_round_trip_long", examples=n.examples, relayed=n.accepted,
           nul_rejected=n.rejected)


def test_stateful_sessions_long(relay_factory, client_ctx):
    relay = relay_factory(deliver=False, limits=OPEN_LIMITS)
    n = fuzzing.run_stateful(relay, client_ctx, max_examples=EXAMPLES // 4, steps=50)
    record("fuzz_stateful_sessions_long", examples=n.examples, commands=n.steps,
           messages_accepted=n.accepted)


def test_envelope_strings_long(relay_factory, client_ctx):
    relay = relay_factory(deliver=False, limits=OPEN_LIMITS)
    n = fuzzing.run_envelopes(relay, client_ctx, max_examples=EXAMPLES * 2)
    record("fuzz_envelope_strings_long", examples=n.examples, accepted=n.accepted)
