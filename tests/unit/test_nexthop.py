"""Next-hop syntax as Postfix writes it (relayhost, transport_maps), and its errors."""

from __future__ import annotations

import pytest

from helo_smtp import config as config_mod
from helo_smtp.errors import ConfigError
from helo_smtp.outbound.nexthop import check, parse


@pytest.mark.parametrize(("text", "want"), [
    ("smtp.example.net:587", ("smtp.example.net", 587, True)),
    ("[smtp.example.net]:587", ("smtp.example.net", 587, False)),
    ("[smtp.example.net]", ("smtp.example.net", 25, False)),
    ("Smtp.Example.NET.", ("smtp.example.net", 25, True)),
    ("127.0.0.1:1025", ("127.0.0.1", 1025, False)),  # an address needs no lookup
    ("[::1]:1025", ("::1", 1025, False)),
    ("::1", ("::1", 25, False)),
])
def test_parse(text, want):
    assert parse(text, "delivery.relayhost") == want


@pytest.mark.parametrize("text", ["", ":25", "[host", "[host]x", "host:port", "host:0",
                                  "host:70000"])
def test_bad_next_hops_name_the_key(text):
    with pytest.raises(ConfigError, match=r"'delivery\.relayhost'"):
        parse(text, "delivery.relayhost")


def test_check_names_every_bad_entry():
    cfg = config_mod.from_dict({"delivery": {"relayhost": "[x", "routes": {
        "a.test": "[127.0.0.1]:1025", "b.test": "b:notaport"}}}, "relay.toml")
    problems = check(cfg)
    assert len(problems) == 2
    assert any("relay.toml: 'delivery.routes.b.test'" in p for p in problems)
    assert any("'delivery.relayhost'" in p for p in problems)


def test_routes_must_be_a_table_of_strings():
    with pytest.raises(ConfigError, match=r"delivery\.routes\.a\.test"):
        config_mod.from_dict({"delivery": {"routes": {"a.test": 25}}})
    with pytest.raises(ConfigError, match=r"relayhost_tls' must be one of"):
        config_mod.from_dict({"delivery": {"relayhost_tls": "maybe"}})
