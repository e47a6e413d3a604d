"""SIGKILL while delivering: after a restart every recipient acknowledged at submission is
delivered and none is stuck. Leases of the dead process are freed at start (same node id);
a message may reach the sink twice only when the kill cut a DATA whose reply was pending
(the ambiguous end of DATA, RFC 5321 §6.1), so duplicates are bounded by the connections
that were in DATA at that moment."""

from __future__ import annotations

import re
from types import SimpleNamespace

from helo_smtp.store import Store, lifetimes
from tests.support.accounting import assert_accounting
from tests.support.configfile import write_config
from tests.support.relay import base_config, make_tenant
from tests.support.relayproc import RelayProcess
from tests.support.submit import Submitter
from tests.support.waiting import wait_for

MESSAGES = 20
MAX_CONNECTIONS = 3
_MID = re.compile(rb"Message-ID: <([0-9a-f-]+)@relay\.test>", re.IGNORECASE)


def sink_ids(sink) -> list[str]:
    return [_MID.search(m["data"]).group(1).decode() for m in sink.h.messages]


def test_sigkill_while_delivering_loses_nothing(tmp_path, dns_server, mx_port, server_cert,
                                                sinks, client_ctx):
    cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port, cert=server_cert,
                      server={"node_id": "crash-node"},
                      delivery={"connect_timeout": 2.0, "command_timeout": 2.0,
                                "data_timeout": 5.0, "total_deadline": 10.0},
                      pools={"transactional": {"max_connections": MAX_CONNECTIONS}})
    path = write_config(tmp_path / "relay.toml", cfg)
    store = Store.open(cfg.server.database, lifetimes(cfg))
    tenant = make_tenant(store)
    sinks[0].h.stall = {"DATA": 0.5}  # example.test's first MX answers each DATA slowly

    first = RelayProcess(path, tmp_path / "relay.log")
    try:
        handle = SimpleNamespace(ports=first.ports, tenant=tenant)
        with Submitter(handle, client_ctx) as s:
            acked = [s.send([f"r{i}@example.test", f"s{i}@other.test"])
                     for i in range(MESSAGES)]
        wait_for(lambda: len(sinks[0].h.messages) >= 2, what="deliveries under way")
        first.kill()  # mid-delivery: DATA replies pending on the open connections
    finally:
        first.stop()
    at_kill = len(sinks[0].h.messages)
    assert at_kill < MESSAGES  # the kill really came mid-delivery

    sinks[0].h.stall = {}
    second = RelayProcess(path, tmp_path / "relay.log")
    try:
        wait_for(lambda: store.queue.pending_count() == 0, timeout=20,
                 what="every recipient delivered after the restart")
    finally:
        second.stop()

    for mid in acked:
        assert {r["state"] for r in store.admin.recipients(mid)} == {"delivered"}, mid
    ids_mx1, ids_mx3 = sink_ids(sinks[0]), sink_ids(sinks[2])
    assert set(ids_mx1) == set(acked) and set(ids_mx3) == set(acked)
    duplicates = len(ids_mx1) - len(set(ids_mx1)) + len(ids_mx3) - len(set(ids_mx3))
    assert duplicates <= MAX_CONNECTIONS  # only DATA cut by the kill is sent again
    assert store.events.counts() == {"message.received": MESSAGES,
                                     "recipient.accepted": 2 * MESSAGES,
                                     "delivery.delivered": 2 * MESSAGES}
    assert_accounting(store)
    store.close()
