"""Two relay nodes, each a real process (``python -m tests.support.run_relay``), on one
PostgreSQL database, delivering to the test's sinks through the local DNS server.

Each node binds its own outgoing source address, so the sinks can tell which node delivered.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.broadcast.test_pacing_500 import busiest_window
from tests.pg.nodeproc import RelayNode as Node
from tests.support.accounting import assert_accounting
from tests.support.configfile import write_config
from tests.support.net import NET
from tests.support.outbound import bulk_enqueue
from tests.support.relay import base_config, make_tenant
from tests.support.submit import Submitter, build
from tests.support.waiting import wait_for

SOURCES = {"node-a": NET + "6", "node-b": NET + "7"}
_MID = re.compile(rb"Message-ID: <([0-9a-f-]+)@relay\.test>", re.IGNORECASE)

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path, pg_url, dns_server, mx_port, server_cert):
    """``cluster(**config_overrides)`` -> (store, tenant, {name: Node}): two nodes, one
    database, a tenant made before they start."""
    store = Store.open(pg_url)
    tenant = make_tenant(store)
    nodes: list[Node] = []

    def start(**overrides):
        extra_pools = overrides.pop("pools", {})
        for name, source in SOURCES.items():
            pools = {mt: {**extra_pools.get(mt, {}), "source_addresses": [source]}
                     for mt in ("transactional", "broadcast")}
            cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                              cert=server_cert,
                              server={"database": pg_url, "node_id": name,
                                      "shutdown_grace": 1.0},
                              pools=pools, **overrides)
            path = write_config(tmp_path / f"{name}.toml", cfg)
            nodes.append(Node(name, path, tmp_path / f"{name}.log"))
        return store, tenant, {n.name: n for n in nodes}

    yield start
    for n in nodes:
        n.stop()
    store.close()


def _handle(node: Node, tenant) -> SimpleNamespace:
    return SimpleNamespace(ports=node.ports, tenant=tenant)


def _delivered_by(sinks) -> dict[str, str]:
    """source address -> node name, for every message the sinks took."""
    by_ip = {ip: name for name, ip in SOURCES.items()}
    return {m["peer"][0]: by_ip.get(m["peer"][0], "?") for s in sinks for m in s.h.messages}


def test_two_nodes_deliver_2000_messages_each_exactly_once(cluster, sinks, dns, client_ctx):
    """40 submissions of 50 recipients on 50 domains: 2,000 deliveries (one transaction per
    message and domain), half submitted to each node, both nodes delivering."""
    for d in range(50):
        dns.add(f"d{d}.test", "MX", f"10 mx{d % 5 + 1}.example.test.")
    store, tenant, nodes = cluster()
    acked: list[str] = []
    for i, node in enumerate([nodes["node-a"], nodes["node-b"]] * 20):
        with Submitter(_handle(node, tenant), client_ctx) as s:
            acked.append(s.send([f"m{i}@d{d}.test" for d in range(50)]))
    wait_for(lambda: store.queue.pending_count() == 0, timeout=120, interval=0.2,
             what="2,000 deliveries")
    taken = Counter(r for s in sinks for m in s.h.messages for r in m["rcpt_tos"])
    assert len(taken) == 2000 and set(taken.values()) == {1}  # every recipient exactly once
    assert sum(len(s.h.messages) for s in sinks) == 2000
    assert set(_delivered_by(sinks).values()) == {"node-a", "node-b"}  # both delivered
    assert store.events.counts() == {"message.received": 40, "recipient.accepted": 2000,
                                     "delivery.delivered": 2000}
    assert_accounting(store)


def test_sigkilled_node_leaves_its_work_to_the_other(cluster, sinks, client_ctx):
    """node-a dies holding leases mid-delivery; node-b takes them over once they lapse and
    delivers everything. Only a DATA cut by the kill may arrive twice (RFC 5321 §6.1)."""
    store, tenant, nodes = cluster(
        delivery={"lease_seconds": 3.0, "connect_timeout": 2.0, "command_timeout": 2.0,
                  "data_timeout": 5.0, "total_deadline": 10.0})
    sinks[0].h.stall = {"DATA": 0.3}  # example.test answers each DATA slowly
    with Submitter(_handle(nodes["node-a"], tenant), client_ctx) as s:
        acked = [s.send([f"k{i}@example.test"]) for i in range(30)]
    a_ip = SOURCES["node-a"]
    wait_for(lambda: any(p[0] == a_ip and verb == "DATA" for p, verb, _ in sinks[0].h.commands),
             timeout=30, what="node-a in the middle of a delivery")
    nodes["node-a"].kill()
    orphans = {r[0] for r in store.db.read(lambda c: c.execute(
        "SELECT id FROM recipients WHERE claimed_by = 'node-a'").fetchall())}
    assert orphans  # it died holding leases
    sinks[0].h.stall = {}
    wait_for(lambda: store.queue.pending_count() == 0, timeout=60, interval=0.1,
             what="node-b finishing node-a's work")
    states = store.db.read(lambda c: c.execute(
        "SELECT id, state FROM recipients").fetchall())
    assert {s for _, s in states} == {"delivered"} and orphans <= {i for i, _ in states}
    got = [_MID.search(m["data"]).group(1).decode() for m in sinks[0].h.messages]
    assert set(got) == set(acked)  # nothing lost
    assert len(got) - len(set(got)) <= 10  # at most node-a's open DATA, sent again
    assert store.events.counts()["delivery.delivered"] == 30
    assert_accounting(store)


def test_one_key_submitted_to_both_nodes_at_once_is_one_message(cluster, client_ctx):
    store, tenant, nodes = cluster()
    keys = [f"order-{i}" for i in range(8)]
    answers: dict[str, list[str]] = {k: [] for k in keys}
    barrier = threading.Barrier(2)

    def client(node: Node) -> None:
        with Submitter(_handle(node, tenant), client_ctx) as s:
            for key in keys:
                raw = build(tenant.sender, ["buyer@example.test"], subject=f"Receipt {key}",
                            headers={"X-Helo-Idempotency-Key": key})
                barrier.wait(30)
                answers[key].append(s.send(["buyer@example.test"], raw=raw))

    threads = [threading.Thread(target=client, args=(n,)) for n in nodes.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for key, ids in answers.items():
        assert len(ids) == 2 and len(set(ids)) == 1, (key, ids)  # same messageId from both
    assert store.db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0]
                         ) == len(keys)
    assert store.events.counts()["message.received"] == len(keys)


def test_pacing_holds_for_the_whole_cluster(cluster, sinks, dns):
    """Both nodes deliver one paced broadcast to one domain; the per-domain rate (5/s) holds
    for the two together (buckets in PostgreSQL), not 5/s per node. 20 recipients from a
    one-second burst of 5 need at least (20 - 5) / 5 = 3 s cluster-wide; per-node buckets
    would let them go in about (20 - 10) / 10 = 1 s."""
    dns.add("paced.test", "MX", "10 mx3.example.test.")
    store, tenant, _ = cluster(pools={"broadcast": {"rate": 0.0, "per_domain_rate": 5.0}})
    start = time.time()
    bulk_enqueue(store, tenant, 20, lambda i: f"p{i}@paced.test", MailType.BROADCAST)
    wait_for(lambda: store.queue.pending_count() == 0, timeout=60, interval=0.1,
             what="the paced broadcast")
    got = [m for s in sinks for m in s.h.messages]
    assert sorted(r for m in got for r in m["rcpt_tos"]) == sorted(
        f"p{i}@paced.test" for i in range(20))
    assert set(_delivered_by(sinks).values()) == {"node-a", "node-b"}  # both took part
    times = sorted(m["t"] for m in got)
    assert times[-1] - start >= (20 - 5) / 5.0
    assert busiest_window(times) <= 2 * 5 + 2  # rate + burst, a little slack
    assert_accounting(store)
