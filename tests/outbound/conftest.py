"""Fixtures for delivery tests: the two workers fed straight through the store.

Every test here runs on both backends: ``make_cfg`` puts the store on the ``database``
fixture, and ``pytest_generate_tests`` gives each test one ``backend`` parameter (``sqlite``,
``postgresql``). On PostgreSQL the workers use the shared primitives (claims with SKIP LOCKED,
pacing from ``store.throttle``, cluster connection slots), so the same tests check those.
Tests marked ``sqlite_only`` stay on SQLite."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from helo_smtp.config import Config
from helo_smtp.store import Store, lifetimes
from tests.support.outbound import WorkerRig, extra_sinks  # noqa: F401 - fixture
from tests.support.pgserver import BACKENDS
from tests.support.relay import Tenant, base_config, make_tenant

#: Short timeouts so failure paths finish in well under a second or two.
FAST = {"connect_timeout": 5.0, "command_timeout": 5.0, "data_timeout": 5.0,
        "total_deadline": 15.0, "idle_connection_seconds": 5.0, "lease_seconds": 30.0}


@dataclass
class Rig:
    cfg: Config
    store: Store
    tenant: Tenant
    workers: WorkerRig


def pytest_generate_tests(metafunc):
    if ("backend" in metafunc.fixturenames
            and not metafunc.definition.get_closest_marker("sqlite_only")):
        metafunc.parametrize("backend", BACKENDS, indirect=True, ids=str)


@pytest.fixture
def make_cfg(tmp_path, dns_server, mx_port, server_cert, database):
    def make(**overrides) -> Config:
        overrides["delivery"] = {**FAST, **overrides.get("delivery", {})}
        overrides["server"] = {"database": database, **overrides.get("server", {})}
        return base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                           cert=server_cert, **overrides)
    return make


@pytest.fixture
def rig_factory(make_cfg):
    """``rig_factory(**config_overrides)`` -> Rig with both workers running."""
    made: list[Rig] = []

    def make(**overrides) -> Rig:
        cfg = make_cfg(**overrides)
        store = Store.open(cfg.server.database, lifetimes(cfg))
        rig = Rig(cfg, store, make_tenant(store), WorkerRig(cfg, store))
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.workers.stop()
        rig.store.close()
