"""The queue and message tools steer a running daemon: `helo-smtp serve` as a subprocess, the
CLI as separate processes on the same database, no restart in between.

A sink answering 451 leaves a message deferred (next try minutes away); `messages show` reports
the attempt with the remote reply; `queue hold` keeps it from delivery even when retried;
`queue release` + `queue retry` make the live daemon deliver it at once; `queue purge` stops
another one for good, with an event, and the daemon never delivers it.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from helo_smtp import config
from helo_smtp.store import Store
from tests.ops.serveproc import HELO_SMTP
from tests.ops.test_serve import message, submit
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def cli(path, *args: str) -> dict:
    done = subprocess.run([HELO_SMTP, "--config", str(path), *args, "--json"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def recipient_state(path, mid: str) -> str:
    return cli(path, "messages", "show", mid)["recipients_detail"][0]["state"]


def submit_and_find(proc, path, ctx, tenant, subject: str) -> str:
    submit(proc.ports["submission"], ctx, tenant, message(tenant, subject))
    rows = cli(path, "messages", "list")
    found = [m for m in rows if m["subject"] == subject]
    assert len(found) == 1, rows
    return found[0]["id"]


def test_hold_release_retry_purge_steer_the_live_daemon(serve, sinks, client_ctx):
    proc, path, tenant = serve()
    proc.wait_ready()
    for s in sinks[:2]:  # both MX hosts of example.test
        s.h.data_reply = "451 4.3.0 try again later"
    first = submit_and_find(proc, path, client_ctx, tenant, "first")
    wait_for(lambda: recipient_state(path, first) == "deferred", what="a deferral")
    shown = cli(path, "messages", "show", first)
    assert [a["code"] for a in shown["attempts"]] == [451]
    assert "try again later" in shown["attempts"][0]["text"]

    cli(path, "queue", "hold", first)
    [row] = cli(path, "queue", "list")
    assert row["held"] in (True, 1)
    for s in sinks[:2]:
        s.h.data_reply = None
    cli(path, "queue", "retry", first)  # held: retry does not override a hold
    assert recipient_state(path, first) == "deferred"
    cli(path, "queue", "release", first)
    cli(path, "queue", "retry", first)
    wait_for(lambda: recipient_state(path, first) == "delivered", timeout=20,
             what="the live daemon delivering the retried message")
    assert sum(len(s.h.messages) for s in sinks) == 1

    for s in sinks[:2]:
        s.h.data_reply = "451 4.3.0 try again later"
    second = submit_and_find(proc, path, client_ctx, tenant, "second")
    wait_for(lambda: recipient_state(path, second) == "deferred", what="a second deferral")
    for s in sinks[:2]:
        s.h.data_reply = None
    cli(path, "queue", "purge", second, "--yes")
    assert recipient_state(path, second) == "expired"
    assert cli(path, "messages", "show", second)["status"] == "failed"
    store = Store.open(config.load(path).server.database)
    try:
        assert [e["type"] for e in store.events.list(message_id=second)] == [
            "message.received", "recipient.accepted", "delivery.deferred", "message.expired",
            "queue.purged"]
    finally:
        store.close()
    cli(path, "queue", "retry", "--domain", "example.test")  # nothing pending: no-op
    assert sum(len(s.h.messages) for s in sinks) == 1  # the purged one never went out
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output
