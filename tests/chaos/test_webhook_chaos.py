"""Webhooks survive a crash: the receiver is down, the relay (``helo-smtp serve``) is killed
with SIGKILL while deliveries are being retried, restarted, then the receiver comes back:
every event reaches it at least once, each with a valid signature."""

from __future__ import annotations

import socket
import time

import pytest

from helo_smtp.store import Store, lifetimes
from tests.reliability.crashload import kill, start
from tests.support.configfile import write_config
from tests.support.relay import base_config, make_tenant
from tests.support.submit import Submitter
from tests.support.waiting import wait_for
from tests.support.webhookreceiver import WebhookReceiver

pytestmark = pytest.mark.chaos

MESSAGES = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_event_arrives_after_kill_and_outage(tmp_path, dns_server, mx_port, server_cert,
                                                   sinks, client_ctx):
    cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port, cert=server_cert,
                      server={"node_id": "chaos-hooks"},
                      webhooks={"allow_private": True, "first_retry_seconds": 0.5,
                                "poll_seconds": 0.1, "timeout_seconds": 2.0})
    path = write_config(tmp_path / "relay.toml", cfg)
    store = Store.open(cfg.server.database, lifetimes(cfg))
    tenant = make_tenant(store)
    port = _free_port()  # the receiver's; nothing listens there yet
    rx = WebhookReceiver(port=port)
    ep, rx.secret = store.webhooks.create(tenant.channel.id, rx.url)
    proc = start(path, tmp_path)
    try:
        relay = type("R", (), {"ports": proc.ports, "tenant": tenant})()
        with Submitter(relay, client_ctx) as s:
            for i in range(MESSAGES):
                s.send([f"a{i}@example.test", f"b{i}@other.test"])
        # every event is written and its first POST has failed: retries are due
        want = 4 * MESSAGES  # accepted and delivered, two recipients each
        wait_for(lambda: len(store.events.feed(limit=10_000)) == want, timeout=60,
                 what="every event recorded")
        wait_for(lambda: store.webhooks.deliveries(ep.id, "pending", 10_000) and all(
            d["attempts"] >= 1 for d in store.webhooks.deliveries(ep.id, "pending", 10_000)),
            timeout=60, what="retrying")
        kill(proc)
    finally:
        proc.close()
    proc = start(path, tmp_path)
    try:
        time.sleep(1.0)  # still down for a while after the restart
        rx.start()
        ids = {e["uid"] for e in store.events.feed(limit=10_000)}
        wait_for(lambda: {e["id"] for e in rx.events} >= ids, timeout=120,
                 what="every event delivered at least once")
        assert rx.bad_signatures == 0
        wait_for(lambda: store.webhooks.pending_count() == 0, timeout=30, what="all recorded")
        states = {d["state"] for d in store.webhooks.deliveries(ep.id, limit=10_000)}
        assert states == {"delivered"}
    finally:
        proc.close()
        rx.stop()
        store.close()
