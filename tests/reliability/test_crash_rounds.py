"""Crash under load, short version (the chaos run does 100 rounds: tests/chaos/): SIGKILL of
``helo-smtp serve`` at a random moment while clients submit and a sink stalls DATA; after
each round nothing acknowledged is lost (see crashload.py for every check)."""

from __future__ import annotations

from tests.reliability.crashload import run_rounds
from tests.support.figures import record

ROUNDS = 3


def test_sigkill_rounds_lose_nothing(tmp_path, dns_server, mx_port, server_cert, sinks,
                                     client_ctx):
    fig = run_rounds(ROUNDS, tmp_path=tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                     cert=server_cert, sinks=sinks, ctx=client_ctx, seed=1)
    assert fig.rounds == ROUNDS and fig.acknowledged > 0
    assert fig.lost == 0
    record("crash_under_load_short", rounds=fig.rounds, acknowledged=fig.acknowledged,
           lost=fig.lost, duplicated=fig.duplicated,
           unacknowledged_but_stored=fig.unacknowledged_stored)
