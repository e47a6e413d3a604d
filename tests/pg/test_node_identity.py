"""Node names are checked, with real ``helo-smtp serve`` processes on one PostgreSQL: a start
whose ``node_id`` has a live heartbeat refuses with one line (it would free the live node's
leases); another name starts; a restart of a node killed outright is not held up."""

from __future__ import annotations

import os
import signal

import pytest

from helo_smtp.store import Store
from tests.ops.serveproc import ServeProcess
from tests.support.configfile import write_config
from tests.support.relay import base_config

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path, pg_url, dns_server, mx_port, server_cert):
    """``node(name)`` -> a started ``serve`` process named ``name`` on the test's database."""
    procs: list[ServeProcess] = []

    def start(name: str, config: str | None = None) -> ServeProcess:
        cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                          cert=server_cert, http={"listen": ""},
                          server={"database": pg_url, "node_id": name, "shutdown_grace": 1.0})
        path = write_config(tmp_path / f"{config or name}.toml", cfg)
        proc = ServeProcess(path, tmp_path)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.close()


def test_a_second_start_under_a_live_name_refuses(node, pg_url):
    first = node("relay-1")
    first.wait_ready()
    twin = node("relay-1", config="relay-1-twin")
    assert twin.wait() == 1, twin.output
    lines = [x for x in twin.lines if x.strip()]
    assert "Traceback" not in twin.output
    assert len([x for x in lines if x.startswith("Error: ")]) == 1
    assert lines[-1].startswith("Error: node_id 'relay-1' is in use by a live node"), lines
    assert f"pid {first.proc.pid}" in lines[-1]
    other = node("relay-2")
    other.wait_ready()  # another name is fine
    store = Store.open(pg_url)
    try:
        live = {n.node_id: n.pid for n in store.nodes.live(lease=60)}
    finally:
        store.close()
    assert live == {"relay-1": first.proc.pid, "relay-2": other.proc.pid}


def test_a_node_killed_outright_restarts_at_once_under_its_name(node, pg_url):
    """Same machine, and the old PID is no helo-smtp process: the previous holder is gone,
    so the restart does not wait for its heartbeat (60 s here) to lapse."""
    first = node("relay-1")
    first.wait_ready()
    os.kill(first.proc.pid, signal.SIGKILL)
    first.wait()
    again = node("relay-1", config="relay-1-again")
    again.wait_ready()
    assert "Error" not in again.output
    store = Store.open(pg_url)
    try:
        assert [n.pid for n in store.nodes.live(lease=60)] == [again.proc.pid]
    finally:
        store.close()
