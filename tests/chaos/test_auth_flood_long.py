"""AUTH brute force, the long run: 3,000 connections (9,000 guesses allowed), 4 at a time,
against one relay; the lockout holds throughout and the loop's p99 lag stays under 50 ms.
Run alone (the chaos command uses no xdist), the wall-clock lag is asserted too."""

from __future__ import annotations

import pytest

from tests.reliability.test_abuse import LAG_P99_LIMIT, PARALLEL, auth_flood
from tests.support.figures import record

pytestmark = pytest.mark.chaos


def test_auth_flood_3000_connections(relay_factory, client_ctx):
    relay = relay_factory(deliver=False)
    fig = auth_flood(relay, client_ctx, 3000, PARALLEL)
    record("auth_brute_force_long", **fig)
    assert fig["wall_lag_p99_ms"] < LAG_P99_LIMIT * 1000, fig
