"""Throughput of one and two relay nodes on this machine (the numbers in docs/scaling.md).

    .venv/bin/python -m tests.pg.bench_nodes                 # 3000 messages per scenario
    .venv/bin/python -m tests.pg.bench_nodes --messages 1000 --concurrency 10

Scenarios: SQLite with one node (the reference), PostgreSQL with one node, PostgreSQL with two
nodes. Each node is a real process (``tests.support.run_relay``); PostgreSQL runs with fsync
on, as in production; the load client (``bench.client``: STARTTLS, AUTH PLAIN, one message per
transaction, 4 KiB) spreads its sessions evenly over the nodes; every message has one
recipient and is delivered to Postfix's ``smtp-sink`` through the local DNS server. Reported:
accepted/s (250s per second at the client), delivered/s (from the first submission to the
last message counted by the sink), and the CPU time per message of the relay processes and of
PostgreSQL (less sensitive to whatever else the machine is doing than the rates are).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import trustme

from bench import procs
from bench.client import Target, make_message, run_load
from bench.sinks import CSink
from helo_smtp.store import Store
from tests.pg.nodeproc import RelayNode as Node
from tests.support.configfile import write_config
from tests.support.localdns import LocalDNS
from tests.support.net import MX_IPS, common_free_port
from tests.support.pgserver import PgServer, require_bindir
from tests.support.relay import base_config, make_tenant


def _cert(workdir: Path) -> tuple[str, str]:
    cert = trustme.CA().issue_cert("relay.test", "127.0.0.1")
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


def scenario(name: str, database: str, nodes: int, args: argparse.Namespace, workdir: Path,
             dns_port: int, cert: tuple[str, str], db_pid: int | None) -> dict[str, object]:
    store = Store.open(database)
    tenant = make_tenant(store)
    port = common_free_port([MX_IPS[0]])
    sink = CSink(MX_IPS[0], port).start()
    running: list[Node] = []
    try:
        for i in range(nodes):
            cfg = base_config(workdir, dns_port=dns_port, mx_port=port, cert=cert,
                              server={"database": database, "node_id": f"{name}-{i}"},
                              http={"listen": ""})
            path = write_config(workdir / f"{name}-{i}.toml", cfg)
            running.append(Node(f"{name}-{i}", path, workdir / f"{name}-{i}.log"))
        per_node = args.messages // nodes

        def factory(n: int) -> tuple[str, str, bytes]:
            return tenant.sender, f"r{n}@example.test", make_message(
                tenant.sender, f"r{n}@example.test", f"{name}-{n}")

        async def load():
            return await asyncio.gather(*(run_load(
                Target("127.0.0.1", node.ports["submission"], tenant.username, tenant.secret),
                factory, concurrency=args.concurrency // nodes, count=per_node)
                for node in running))

        db_cpu = procs.tree_cpu(db_pid) if db_pid else 0.0
        relay_cpu = sum(procs.tree_cpu(n.proc.pid) for n in running)
        started = time.time()
        results = asyncio.run(load())
        acked = sum(r.acked for r in results)
        accept_rate = acked / (max(r.last_ack for r in results) - started)
        if not sink.wait_count(acked, timeout=600):
            raise SystemExit(f"{name}: only {sink.count} of {acked} delivered")
        delivered_rate = acked / (sink.time_of(acked) - started)
        relay_cpu = sum(procs.tree_cpu(n.proc.pid) for n in running) - relay_cpu
        db_cpu = (procs.tree_cpu(db_pid) - db_cpu) if db_pid else 0.0
        errors = sum(sum(r.errors.values()) for r in results)
        return {"scenario": name, "nodes": nodes, "messages": acked, "errors": errors,
                "accepted_per_s": round(accept_rate), "delivered_per_s": round(delivered_rate),
                "relay_ms": 1000 * relay_cpu / acked, "db_ms": 1000 * db_cpu / acked}
    finally:
        for node in running:
            node.stop()
        sink.stop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=20)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="helo-nodes-"))
    dns = LocalDNS(zones=["test."], ttl=3600)
    dns.add("example.test", "MX", "10 mx1.example.test.")
    dns.add("mx1.example.test", "A", MX_IPS[0])
    pg = PgServer(require_bindir(), durable=True)
    rows = []
    with dns:
        pg.start()
        try:
            cert = _cert(workdir)
            rows.append(scenario("sqlite", str(workdir / "relay.db"), 1, args, workdir,
                                 dns.port, cert, None))
            for nodes in (1, 2):
                url = pg.url(pg.create_database())
                rows.append(scenario(f"pg{nodes}", url, nodes, args, workdir, dns.port, cert,
                                     pg.proc.pid if pg.proc else None))
        finally:
            pg.stop()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} messages={args.messages}"
          f" concurrency={args.concurrency}")
    print("| backend | nodes | accepted/s | delivered/s | relay CPU ms/msg | database CPU"
          " ms/msg | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        backend = "SQLite" if r["scenario"] == "sqlite" else "PostgreSQL"
        db = f"{r['db_ms']:.2f}" if r["scenario"] != "sqlite" else "(in the relay)"
        print(f"| {backend} | {r['nodes']} | {r['accepted_per_s']} | {r['delivered_per_s']} |"
              f" {r['relay_ms']:.2f} | {db} | {r['errors']} |")


if __name__ == "__main__":
    main()
