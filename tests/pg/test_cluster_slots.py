"""Cluster connection slots with real nodes (``python -m tests.support.run_relay``) on one
PostgreSQL: every open connection holds a slot, idle or not, so the destination never sees
more than ``per_domain_connections`` at once; a node killed with connections open frees its
slots when its heartbeat and leases lapse (``lease_seconds``), not after ``total_deadline``.

Each node binds its own source address, so the sink counts connections per node.
"""

from __future__ import annotations

import time

import pytest

from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.pg.nodeproc import RelayNode as Node
from tests.support.accounting import assert_accounting
from tests.support.configfile import write_config
from tests.support.net import NET
from tests.support.outbound import bulk_enqueue
from tests.support.relay import base_config, make_tenant
from tests.support.waiting import wait_for

SOURCES = {"node-a": NET + "6", "node-b": NET + "7"}

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path, pg_url, dns_server, mx_port, server_cert):
    """``start(name, **overrides)`` -> Node on the test's database; ``(store, tenant)``."""
    store = Store.open(pg_url)
    tenant = make_tenant(store)
    nodes: list[Node] = []

    def start(name: str, **overrides) -> Node:
        pools = {mt: {"source_addresses": [SOURCES[name]], "per_domain_connections": 2,
                      "rate": 0.0, "per_domain_rate": 0.0}
                 for mt in ("transactional", "broadcast")}
        cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                          cert=server_cert, pools=pools,
                          server={"database": pg_url, "node_id": name, "shutdown_grace": 1.0},
                          **overrides)
        node = Node(name, write_config(tmp_path / f"{name}.toml", cfg), tmp_path / f"{name}.log")
        nodes.append(node)
        return node

    yield store, tenant, start
    for n in nodes:
        n.stop()
    store.close()


def test_idle_connections_hold_their_slots_across_nodes(cluster, sinks):
    """per_domain_connections = 2 on two nodes, idle connections kept 30 s (the default):
    node-a's two idle connections keep both slots, so node-b opens none while they are open
    and the destination never has more than 2 open; once node-a closes them (a clean stop
    quits them), node-b gets the slots."""
    store, tenant, start = cluster
    h = sinks[0].h
    h.stall = {"DATA": 0.05}  # deliveries overlap
    a_ip, b_ip = SOURCES["node-a"], SOURCES["node-b"]

    def wave(tag: str) -> None:
        bulk_enqueue(store, tenant, 30, lambda i: f"{tag}{i}@example.test",
                     MailType.TRANSACTIONAL)
        wait_for(lambda: store.queue.pending_count() == 0, timeout=120, interval=0.1,
                 what=f"wave {tag} delivered")

    a = start("node-a")
    wave("a")
    assert h.open_by_ip[a_ip] == 2  # idle now, still open at the destination
    start("node-b")
    wave("b")
    assert h.peak_by_ip[b_ip] == 0 and h.open_by_ip[a_ip] == 2
    a.stop()
    wait_for(lambda: h.open_by_ip[a_ip] == 0, timeout=30, what="node-a's connections closed")
    wave("c")
    assert h.peak_by_ip[b_ip] >= 1  # node-b took over the freed slots
    assert len(h.messages) == 90
    assert h.peak_open <= 2, (h.peak_open, dict(h.peak_by_ip))
    assert_accounting(store)


def test_a_killed_nodes_slots_are_free_after_the_lease(cluster, sinks):
    """node-a dies (SIGKILL) with both slots of example.test held by open connections; with
    lease_seconds = 10 node-b gets both slots once node-a's heartbeat lapses and delivers the
    rest. total_deadline stays at 900 s: slots leased for the longest delivery would keep
    node-b on no connection at all for a quarter of an hour."""
    store, tenant, start = cluster
    delivery = {"lease_seconds": 10.0, "total_deadline": 900.0}
    sinks[0].h.stall = {"DATA": 1.0}
    a = start("node-a", delivery=delivery)
    bulk_enqueue(store, tenant, 40, lambda i: f"k{i}@example.test", MailType.TRANSACTIONAL)
    h = sinks[0].h
    a_ip, b_ip = SOURCES["node-a"], SOURCES["node-b"]
    wait_for(lambda: h.open_by_ip[a_ip] == 2, timeout=60, what="node-a on both connections")
    start("node-b", delivery=delivery)
    a.kill()
    killed = time.monotonic()
    assert store.throttle.in_use("transactional", "example.test") == 2  # still node-a's
    wait_for(lambda: h.open_by_ip[b_ip] == 2, timeout=120, interval=0.05,
             what="node-b on both connections once node-a's slots lapsed")
    took = time.monotonic() - killed
    wait_for(lambda: store.queue.pending_count() == 0, timeout=120, interval=0.1,
             what="node-b finishing the backlog")
    assert h.peak_open <= 2, (h.peak_open, dict(h.peak_by_ip))
    delivered = {r for m in h.messages for r in m["rcpt_tos"]}
    assert delivered == {f"k{i}@example.test" for i in range(40)}  # nothing lost
    assert_accounting(store)
    print(f"node-b had both slots {took:.1f}s after the kill")  # the lease is 10 s
