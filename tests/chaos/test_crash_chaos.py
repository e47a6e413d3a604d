"""Crash under load, the long run behind docs/reliability.md: 100 rounds of SIGKILL at a
random moment while clients submit and a sink stalls DATA (checks: tests/reliability/
crashload.py). Seed from ``$HELO_CHAOS_SEED`` (default 100) so a failing run can be replayed."""

from __future__ import annotations

import os

import pytest

from tests.reliability.crashload import run_rounds
from tests.support.figures import record

pytestmark = pytest.mark.chaos

ROUNDS = int(os.environ.get("HELO_CHAOS_ROUNDS", "100"))


def test_sigkill_100_rounds_lose_nothing(tmp_path, dns_server, mx_port, server_cert, sinks,
                                         client_ctx):
    seed = int(os.environ.get("HELO_CHAOS_SEED", "100"))
    fig = run_rounds(ROUNDS, tmp_path=tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                     cert=server_cert, sinks=sinks, ctx=client_ctx, seed=seed)
    assert fig.rounds == ROUNDS
    assert fig.lost == 0
    record("crash_under_load", seed=seed, rounds=fig.rounds, acknowledged=fig.acknowledged,
           lost=fig.lost, duplicated=fig.duplicated,
           unacknowledged_but_stored=fig.unacknowledged_stored,
           pending_at_kills=fig.pending_at_kills, client_errors=fig.client_errors)
