"""A real HTTPServer on 127.0.0.1 port 0 over a temp store, and an aiohttp client for it."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pytest

from helo_smtp import config as config_mod
from helo_smtp.config import HTTPConfig
from helo_smtp.http.app import HTTPServer
from helo_smtp.store import Store
from tests.support.relay import Tenant, make_tenant

SECRET = "http-test-secret"


@dataclass
class Served:
    base: str  # http://127.0.0.1:<port>
    client: aiohttp.ClientSession
    http: HTTPConfig  # what the delivery side would personalize with
    secret: bytes
    store: Store


@pytest.fixture
def tenant(store) -> Tenant:
    return make_tenant(store)


@pytest.fixture
async def served(store):
    cfg = config_mod.from_dict({"http": {"listen": "127.0.0.1:0", "secret": SECRET,
                                         "public_url": "https://relay.example.test"}})
    server = HTTPServer(cfg, store)
    port = await server.start()
    base = f"http://127.0.0.1:{port}"
    # DummyCookieJar: RFC 8058 one-click must work without cookies.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        yield Served(base, client, HTTPConfig(public_url=base, secret=SECRET),
                     SECRET.encode(), store)
    await server.stop()
