"""The server itself: /metrics, /healthz, listen parsing, the generated key, start/stop."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helo_smtp import config as config_mod
from helo_smtp.config import HTTPConfig
from helo_smtp.http.app import HTTPServer, parse_listen
from helo_smtp.runtime import metrics
from helo_smtp.tracking import tokens
from tests.http.helpers import enqueue, urls_for


async def test_metrics_parse_and_count_engagement(served, tenant):
    msg = await enqueue(served.store, tenant, ["ann@example.test"])
    async with served.client.get(urls_for(msg, "ann@example.test", served.http,
                                          served.secret)["open"]) as r:
        assert r.status == 200
    async with served.client.get(f"{served.base}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"helo_messages_accepted", "helo_delivery_attempts", "helo_engagement",
            "helo_pacing_slowdowns"} <= set(families)
    opens = [s.value for s in families["helo_engagement"].samples
             if s.name == "helo_engagement_total" and s.labels == {"kind": "open"}]
    assert opens and opens[0] >= 1


async def test_healthz(served):
    async with served.client.get(f"{served.base}/healthz") as r:
        assert r.status == 200
        assert await r.text() == "ok\n"


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:8025", ("127.0.0.1", 8025)), ("[::1]:0", ("::1", 0)), (":80", ("0.0.0.0", 80))])
def test_parse_listen(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["localhost", "host:port", ""])
def test_parse_listen_refuses_nonsense(listen):
    with pytest.raises(ValueError):
        parse_listen(listen)


async def test_without_a_configured_secret_the_generated_key_is_used(store, tenant):
    cfg = config_mod.from_dict({"http": {"listen": "127.0.0.1:0", "secret": ""}})
    server = HTTPServer(cfg, store)
    port = await server.start()
    try:
        key = tokens.tracking_secret(HTTPConfig(), store.settings)
        http = HTTPConfig(public_url=f"http://127.0.0.1:{port}")
        msg = await enqueue(store, tenant, ["ann@example.test"])
        good = urls_for(msg, "ann@example.test", http, key)["click"]
        other = urls_for(msg, "ann@example.test", http, b"a-different-key")["click"]
        async with aiohttp.ClientSession() as client:
            async with client.get(good, allow_redirects=False) as r:
                assert r.status == 302
            async with client.get(other, allow_redirects=False) as r:
                assert r.status == 404
    finally:
        await server.stop()
    async with aiohttp.ClientSession() as client:  # stopped means the port is closed
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_metrics_are_served_when_queue_stats_fail(served):
    def broken() -> dict:
        raise RuntimeError("database is locked")

    previous = metrics._collector
    metrics.register_queue(broken)
    try:
        async with served.client.get(f"{served.base}/metrics") as r:
            assert r.status == 200
            families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    finally:
        if previous is not None:
            metrics.register_queue(previous._stats)
    assert families["helo_queue_depth"].samples == []
    assert "helo_engagement" in families
