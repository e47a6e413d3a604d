"""Caps that hold for a cluster, and how fast a survivor recovers (docs/scaling.md).

    .venv/bin/python -m bench.cluster                     # 1, 2 and 3 nodes, 1000 messages each
    .venv/bin/python -m bench.cluster --nodes 2 --messages 300
    .venv/bin/python -m bench.cluster --save               # and bench/results/cluster.json

Each scenario: N relay nodes, each a real process (``tests.support.run_relay``) with its own
source address, on one PostgreSQL (fsync on); one destination domain capped at
``per_domain_rate = 20`` and ``per_domain_connections = 4`` (``lease_seconds = 10``); a
backlog of one-recipient messages queued at once. The destination is an aiosmtpd sink
(``tests.support.sinks.Sink``) that answers DATA after 0.15 s, so one connection carries at
most ~6.7 messages/s and the rate cap needs all four connections: a node that dies holding
slots slows the survivors down until its slots are free again. Reported, as seen at the
destination: the delivery rate in steady state (from 5 s after the first delivery, past the
bucket's initial one-second burst, to 1 s before the kill or the last delivery), the most
connections open at once, messages delivered and delivered more than once. With 2 or 3 nodes
the node with the most connections open is killed (SIGKILL) after 40 % of the backlog; then:
how many connections it had open, the time from the kill until the survivors have all 4
connections open, the time until they deliver at 90 % of the cap over a 2 s window (2.0 s is
the least this can show), and their rate from 5 s after that to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import cluster_report
from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.pg.bench_nodes import _cert  # the same throwaway certificate
from tests.pg.nodeproc import RelayNode as Node
from tests.support.configfile import write_config
from tests.support.localdns import LocalDNS
from tests.support.net import MX_IPS, NET, common_free_port
from tests.support.outbound import bulk_enqueue
from tests.support.pgserver import PgServer, require_bindir
from tests.support.relay import base_config, make_tenant
from tests.support.sinks import Sink

RATE, CONNECTIONS, LEASE = 20.0, 4, 10.0
DATA_DELAY = 0.15
WINDOW = 2.0
_MID = re.compile(rb"Message-ID: <([^>]+)>", re.IGNORECASE)


def _rate(times: list[float], start: float, end: float) -> float:
    n = sum(1 for t in times if start <= t < end)
    return n / (end - start) if end > start else 0.0


def recovery(times: list[float], killed: float) -> float | None:
    """Seconds from ``killed`` until a 2 s window ending then held 90 % of the rate cap."""
    times = sorted(t for t in times if t >= killed)
    need = 0.9 * RATE * WINDOW
    for i, t in enumerate(times):
        first = next(j for j in range(i + 1) if times[j] >= t - WINDOW)
        if t - WINDOW >= killed and i - first + 1 >= need:
            return t - killed
    return None


def scenario(nodes: int, messages: int, pg: PgServer, workdir: Path, dns_port: int,
             cert: tuple[str, str], sink: Sink, port: int) -> dict[str, object]:
    url = pg.url(pg.create_database())
    store = Store.open(url)
    tenant = make_tenant(store)
    sink.h.reset()
    sink.h.stall = {"DATA": DATA_DELAY}
    running: list[Node] = []
    opened: dict[str, float] = {"dead_had": 0}
    try:
        for i in range(nodes):
            name = f"n{nodes}-{i}"
            pools = {mt: {"source_addresses": [f"{NET}{6 + i}"], "rate": 0.0,
                          "per_domain_rate": RATE, "per_domain_connections": CONNECTIONS}
                     for mt in ("transactional", "broadcast")}
            cfg = base_config(workdir, dns_port=dns_port, mx_port=port, cert=cert,
                              server={"database": url, "node_id": name},
                              delivery={"lease_seconds": LEASE, "total_deadline": 900.0,
                                        "data_timeout": 30.0},
                              pools=pools, http={"listen": ""})
            path = write_config(workdir / f"{name}.toml", cfg)
            running.append(Node(name, path, workdir / f"{name}.log"))
        started = time.time()
        bulk_enqueue(store, tenant, messages, lambda n: f"r{n}@example.test",
                     MailType.TRANSACTIONAL)
        killed = None
        deadline = time.time() + 60 + 3 * messages / RATE
        survivors = {f"{NET}{6 + i}" for i in range(nodes)}
        while len(sink.h.messages) < messages and time.time() < deadline:
            if nodes > 1 and killed is None and len(sink.h.messages) >= messages * 2 // 5:
                # the node with the most connections open: the survivors need its slots
                victim = max(range(nodes), key=lambda i: sink.h.open_by_ip[f"{NET}{6 + i}"])
                opened["dead_had"] = sink.h.open_by_ip[f"{NET}{6 + victim}"]
                running[victim].kill()
                killed = time.time()
                survivors.discard(f"{NET}{6 + victim}")
            if (killed is not None and "all_slots" not in opened
                    and sum(sink.h.open_by_ip[ip] for ip in survivors) >= CONNECTIONS):
                opened["all_slots"] = time.time() - killed
            time.sleep(0.02)
        time.sleep(2.0)  # anything late (a duplicate) shows up
        times = [m["t"] for m in sink.h.messages]
        ids = Counter(_MID.search(m["data"]).group(1) for m in sink.h.messages)
        first, last = (min(times), max(times)) if times else (started, started)
        rec = recovery(times, killed) if killed is not None else None
        after = (_rate(times, killed + rec + 5, last - 1)
                 if killed is not None and rec is not None else None)
        return {"nodes": nodes, "messages": messages, "delivered": len(ids),
                "duplicates": sum(n - 1 for n in ids.values()),
                "rate": _rate(times, first + 5, (killed or last) - 1),
                "peak_connections": sink.h.peak_open, "dead_had": opened["dead_had"],
                "all_slots_s": opened.get("all_slots"), "recovery_s": rec,
                "rate_after": after, "pending": store.queue.pending_count()}
    finally:
        for node in running:
            node.stop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--nodes", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--save", action="store_true",
                    help="write bench/results/cluster.json (the docs/benchmarks.md section)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="helo-cluster-"))
    dns = LocalDNS(zones=["test."], ttl=3600)
    dns.add("example.test", "MX", "10 mx1.example.test.")
    dns.add("mx1.example.test", "A", MX_IPS[0])
    port = common_free_port([MX_IPS[0]])
    sink = Sink(MX_IPS[0], port, "mx1.example.test").start()
    pg = PgServer(require_bindir(), durable=True)
    rows = []
    with dns:
        pg.start()
        try:
            cert = _cert(workdir)
            for n in args.nodes:
                rows.append(scenario(n, args.messages, pg, workdir, dns.port, cert, sink, port))
        finally:
            pg.stop()
            sink.stop()
    params = {"messages": args.messages, "rate": RATE, "connections": CONNECTIONS,
              "lease": LEASE, "data_delay": DATA_DELAY, "cpus": os.cpu_count(),
              "load": os.getloadavg()[0]}
    if args.save:
        cluster_report.RESULTS.write_text(json.dumps({"params": params, "rows": rows},
                                                     indent=1) + "\n")
    print(f"cpus={os.cpu_count()} load={params['load']:.1f} messages={args.messages}")
    print(cluster_report.table(rows))

if __name__ == "__main__":
    main()
