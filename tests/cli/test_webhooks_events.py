"""webhooks create / list / update / delete / test / deliveries, and events list."""

from __future__ import annotations

import pytest

from tests.cli.conftest import CLI, enqueue


@pytest.fixture
def chan(cli: CLI) -> str:
    cli.ok("accounts", "create", "acme")
    return cli.json("channels", "create", "--account", "acme", "--name", "news")["id"]


def test_webhook_lifecycle(cli: CLI, chan, db_store):
    made = cli.json("webhooks", "create", "--channel", "news", "--url",
                    "https://hooks.example.com/helo", "--events", "bounced,delivered")
    assert made["secret"].startswith("whsec_") and made["events"] == ["delivered", "bounced"]
    assert made["status"] == "enabled"
    wid = made["id"]
    [listed] = cli.json("webhooks", "list")
    assert "secret" not in listed and listed["id"] == wid and listed["pending"] == 0
    up = cli.json("webhooks", "update", wid, "--disable", "--events", "all")
    assert (up["status"], up["events"]) == ("disabled", ["all"])
    rotated = cli.json("webhooks", "update", wid, "--enable", "--rotate-secret")
    assert rotated["secret"] != made["secret"] and rotated["status"] == "enabled"
    assert len(db_store.webhooks.require(wid).secrets) == 2  # both sign during the overlap
    cli.ok("webhooks", "test", wid)
    [d] = cli.json("webhooks", "deliveries", wid)
    assert (d["type"], d["state"], d["attempts"]) == ("webhook.test", "pending", 0)
    cli.ok("webhooks", "delete", wid)
    assert cli.json("webhooks", "list") == []


def test_webhook_bad_input(cli: CLI, chan):
    for url in ("http://127.0.0.1/x", "http://10.1.2.3/x", "http://[::1]/x",
                "http://169.254.169.254/latest", "http://localhost:8080/", "ftp://x.example/"):
        assert "webhook URL refused" in cli.fail("webhooks", "create", "--channel", "news",
                                                 "--url", url), url
    assert "unknown event type 'nope'" in cli.fail(
        "webhooks", "create", "--channel", "news", "--url", "https://h.example.com/",
        "--events", "nope")
    assert "no webhook" in cli.fail("webhooks", "delete", "nope")


def test_private_urls_allowed_by_config(tmp_path, dns_server, database):
    from click.testing import CliRunner

    from helo_smtp import store as store_mod
    from tests.cli.conftest import config_data
    from tests.support.configfile import dumps

    path = tmp_path / "allow.toml"
    path.write_text(dumps(config_data(tmp_path, dns_server.port, server={"database": database},
                                      webhooks={"allow_private": True})))
    if not database.startswith("postgresql"):
        (tmp_path / "var").mkdir(exist_ok=True)
    store_mod.migrate(database)
    cli = CLI(path, tmp_path, CliRunner())
    cli.ok("accounts", "create", "acme")
    cli.ok("channels", "create", "--account", "acme", "--name", "news")
    assert cli.json("webhooks", "create", "--channel", "news", "--url",
                    "http://127.0.0.1:9/x")["url"] == "http://127.0.0.1:9/x"


def test_events_list_filters(cli: CLI, chan, db_store):
    acc = db_store.accounts.require("acme")
    m1 = enqueue(db_store, acc.id, chan, "app@sender.test", ["ann@example.test",
                                                              "bob@example.test"])
    m2 = enqueue(db_store, acc.id, chan, "app@sender.test", ["ann@example.test"],
                 suppressed=["zed@example.test"])
    every = cli.json("events", "list")
    assert [(e["type"], e["recipient"]) for e in every] == [
        ("accepted", "ann@example.test"), ("accepted", "bob@example.test"),
        ("accepted", "ann@example.test"), ("suppressed", "zed@example.test")]
    assert all(e["channelId"] == chan and len(e["id"]) == 36 for e in every)
    assert [e["messageId"] for e in cli.json("events", "list", "--message", m2)] == [m2, m2]
    ann = cli.json("events", "list", "--recipient", "ann@example.test")
    assert [e["messageId"] for e in ann] == [m1, m2]
    assert [e["recipient"] for e in cli.json("events", "list", "--type", "suppressed")] == [
        "zed@example.test"]
    assert cli.json("events", "list", "--since", "2030-01-01") == []
    assert len(cli.json("events", "list", "--until", "2030-01-01")) == 4
    assert "unknown event type" in cli.fail("events", "list", "--type", "sent")
    assert "accepted" in cli.ok("events", "list").stdout  # the table for people


def test_domains_show_lists_bounce_domain_records(tmp_path, dns_server, database):
    from click.testing import CliRunner

    from helo_smtp import store as store_mod
    from tests.cli.conftest import config_data
    from tests.support.configfile import dumps

    path = tmp_path / "bounces.toml"
    path.write_text(dumps(config_data(
        tmp_path, dns_server.port, server={"database": database, "hostname": "relay.test"},
        bounces={"domain": "bounces.relay.test"},
        pools={"transactional": {"source_addresses": ["192.0.2.10"]},
               "broadcast": {"source_addresses": ["192.0.2.11"]}})))
    if not database.startswith("postgresql"):
        (tmp_path / "var").mkdir(exist_ok=True)
    store_mod.migrate(database)
    cli = CLI(path, tmp_path, CliRunner())
    cli.ok("accounts", "create", "acme")
    cli.ok("domains", "add", "example.test", "--account", "acme", "--bits", "1024")
    out = cli.json("domains", "show", "example.test")
    assert out["bounce_records"] == [
        {"name": "bounces.relay.test", "type": "MX", "value": "10 relay.test."},
        {"name": "bounces.relay.test", "type": "TXT",
         "value": "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 -all"}]
    human = cli.ok("domains", "show", "example.test").stdout
    assert "bounces.relay.test. IN MX 10 relay.test." in human
    assert 'bounces.relay.test. IN TXT "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 -all"' in human
