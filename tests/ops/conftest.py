"""Fixtures for the ops tests: `helo-smtp serve` as a real subprocess."""

from __future__ import annotations

import pytest

from helo_smtp.store import Store
from tests.ops.serveproc import ServeProcess
from tests.support.configfile import write_config
from tests.support.outbound import extra_sinks  # noqa: F401 - fixture
from tests.support.relay import base_config, make_tenant


@pytest.fixture
def serve(tmp_path, dns_server, mx_port, server_cert):
    """``serve(**overrides)`` -> (ServeProcess, config path, tenant); stopped at teardown."""
    procs: list[ServeProcess] = []

    def start(mdwe: bool = False, watchdog_usec: int | None = None, abstract: bool = False,
              **overrides):
        cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                          cert=server_cert, **overrides)
        path = write_config(tmp_path / "helo-smtp.toml", cfg)
        store = Store.open(cfg.server.database)
        try:
            tenant = make_tenant(store)
        finally:
            store.close()
        proc = ServeProcess(path, tmp_path, abstract_socket=abstract,
                            watchdog_usec=watchdog_usec, mdwe=mdwe)
        procs.append(proc)
        return proc, path, tenant

    yield start
    for p in procs:
        p.close()
