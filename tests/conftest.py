"""Shared fixtures: local DNS, scriptable sink MTAs, TLS material, a store on a temp file.

Session-scoped servers run in threads with their own loops; function-scoped resets give each
test a clean slate. Everything binds loopback with port 0 (one 127.0.N.x block per xdist worker).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme

from helo_smtp.store import Store
from tests.support.localdns import LocalDNS
from tests.support.net import MX_IPS, common_free_port
from tests.support.pgserver import BACKENDS, pg_server, pg_url  # noqa: F401 - fixtures
from tests.support.sinks import Sink


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: tests SQLite internals (pragmas, files); "
                            "always runs on SQLite")


def pytest_addoption(parser):
    parser.addoption("--chaos", action="store_true", default=False,
                     help="also run tests marked chaos (long runs; or set HELO_CHAOS=1)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``chaos`` run only with ``--chaos`` or ``HELO_CHAOS=1``, and then without the
    per-test timeout (they are long runs by design). Skipping them is the one skip CI allows
    (tests/support/noskip.py)."""
    if config.getoption("--chaos") or os.environ.get("HELO_CHAOS") == "1":
        for item in items:
            if item.get_closest_marker("chaos"):
                item.add_marker(pytest.mark.timeout(0))
        return
    skip = pytest.mark.skip(reason="chaos run: pass --chaos or set HELO_CHAOS=1")
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    """The tests listed in tests/pg/both_backends.py run on both backends."""
    from tests.pg.both_backends import ON_BOTH_BACKENDS

    if "backend" in metafunc.fixturenames and metafunc.definition.nodeid in ON_BOTH_BACKENDS:
        metafunc.parametrize("backend", BACKENDS, indirect=True, ids=str)


@pytest.fixture
def backend(request) -> str:
    """The store backend of this test: ``sqlite`` unless parametrised; ``HELO_TEST_BACKEND=
    postgresql`` runs every unparametrised test (``store``, ``relay_factory``) on PostgreSQL,
    except those marked ``sqlite_only``."""
    if request.node.get_closest_marker("sqlite_only"):
        return "sqlite"
    return getattr(request, "param", os.environ.get("HELO_TEST_BACKEND", "sqlite"))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def dns_server():
    d = LocalDNS(zones=["test."])
    d.add("example.test", "MX", "10 mx1.example.test.", "20 mx2.example.test.")
    d.add("mx1.example.test", "A", MX_IPS[0])
    d.add("mx2.example.test", "A", MX_IPS[1])
    d.add("mx3.example.test", "A", MX_IPS[2])
    d.add("mx4.example.test", "A", MX_IPS[3])
    d.add("mx5.example.test", "A", MX_IPS[4])
    d.add("other.test", "MX", "5 mx3.example.test.")
    d.add("nullmx.test", "MX", "0 .")
    d.servfail.add("broken.test")
    with d:
        yield d


@pytest.fixture
def dns(dns_server):
    """The session DNS server; records a test adds are removed after it."""
    before = dict(dns_server.records)
    servfail, drop, tc = set(dns_server.servfail), set(dns_server.drop), set(dns_server.force_tc)
    yield dns_server
    with dns_server._lock:
        dns_server.records.clear()
        dns_server.records.update(before)
    dns_server.servfail, dns_server.drop, dns_server.force_tc = servfail, drop, tc


@pytest.fixture(scope="session")
def mx_port() -> int:
    return common_free_port(MX_IPS)


@pytest.fixture(scope="session")
def sink_servers(ca, mx_port):
    sinks = [Sink(MX_IPS[0], mx_port, "mx1.example.test").start(),
             Sink(MX_IPS[1], mx_port, "mx2.example.test", ca=ca).start(),
             Sink(MX_IPS[2], mx_port, "mx3.example.test", ca=ca).start(),
             Sink(MX_IPS[3], mx_port, "mx4.example.test", ca=ca).start(),
             Sink(MX_IPS[4], mx_port, "mx5.example.test", ca=ca).start()]
    yield sinks
    for s in sinks:
        s.stop()


@pytest.fixture
def sinks(sink_servers):
    for s in sink_servers:
        s.h.reset()  # clean scripting + recordings per test
    return sink_servers


@pytest.fixture(scope="session")
def server_cert(ca, tmp_path_factory) -> tuple[str, str]:
    """(cert_file, key_file) for the relay's listeners, issued by the test CA."""
    d = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("relay.test", "127.0.0.1", "localhost")
    cert_file, key_file = d / "cert.pem", d / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        with open(cert_file, "ab") as f:
            f.write(pem.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


@pytest.fixture
def client_ctx(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def store(tmp_path: Path, backend: str, request):
    if backend == "postgresql":
        s = Store.open(request.getfixturevalue("pg_url"))
    else:
        s = Store.open(str(tmp_path / "helo.db"))
    yield s
    s.close()


@pytest.fixture
def database(tmp_path, backend, request):
    """``server.database`` for this test's relay (``base_config(..., server={"database":
    database})``): the SQLite file tests/support/relay.py uses by default, or on the
    ``postgresql`` backend a fresh PostgreSQL database of its own (dropped afterwards)."""
    if backend != "postgresql":
        yield str(tmp_path / "relay.db")
        return
    server = request.getfixturevalue("pg_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def relay_factory(tmp_path, dns_server, mx_port, server_cert, backend, request):
    """Build and start relays; every one is stopped at teardown.

    ``relay_factory(deliver=False, limits={...})`` -> RelayHandle (see tests/support/relay.py).
    On the ``postgresql`` backend the relays of a test share one fresh PostgreSQL database
    (as they share one SQLite file otherwise).
    """
    from tests.support.relay import RelayHandle, base_config

    handles: list[RelayHandle] = []
    # set up before (so torn down after) the relays
    pg_database = request.getfixturevalue("database") if backend == "postgresql" else None

    def make(deliver: bool = True, tenant: bool = True, **overrides):
        if pg_database is not None:
            overrides["server"] = {"database": pg_database, **overrides.get("server", {})}
        cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                          cert=server_cert, **overrides)
        handle = RelayHandle(cfg, deliver=deliver, tenant=tenant)
        handles.append(handle)
        return handle

    yield make
    for h in handles:
        h.stop()
