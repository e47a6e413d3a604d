"""Config parsing: defaults, validation errors naming file and key, the settings table."""

from __future__ import annotations

import pytest

from helo_smtp import config
from helo_smtp.errors import ConfigError


def write(tmp_path, text: str):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_follow_spec(tmp_path):
    cfg = config.load(write(tmp_path, ""))
    assert [(lc.port, lc.tls, lc.mail_type) for lc in cfg.listeners] == [
        (587, "starttls", "header"),
        (465, "implicit", "header"),
        (2587, "starttls", "broadcast"),
    ]
    assert cfg.limits.max_message_size == 26_214_400
    assert cfg.pools.broadcast.rate == 50.0 and cfg.pools.broadcast.per_domain_rate == 5.0
    assert cfg.pools.transactional.rate == 0.0
    assert cfg.delivery.port == 25
    assert cfg.source.endswith("c.toml")


def test_values_are_read(tmp_path):
    cfg = config.load(
        write(
            tmp_path,
            """
[server]
hostname = "relay.example.com"
[[listeners]]
address = "127.0.0.1"
port = 2525
tls = "implicit"
mail_type = "broadcast"
[dns]
nameservers = ["127.0.0.1"]
timeout = 2
[pools.broadcast]
rate = 10
""",
        )
    )
    assert cfg.server.hostname == "relay.example.com"
    assert len(cfg.listeners) == 1 and cfg.listeners[0].port == 2525
    assert cfg.dns.nameservers == ["127.0.0.1"] and cfg.dns.timeout == 2.0
    assert cfg.pools.broadcast.rate == 10.0
    assert cfg.pool("broadcast") is cfg.pools.broadcast


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[server]\nhostnme = 'x'\n", "unknown key 'server.hostnme'"),
        ("[nope]\nx = 1\n", "unknown key 'nope'"),
        ("[limits]\nmax_connections = 'many'\n", "'limits.max_connections' must be int"),
        ("[limits]\nmax_connections = true\n", "'limits.max_connections' must be int"),
        ("[limits]\nmax_connections = -1\n", "'limits.max_connections' must not be negative"),
        ("[[listeners]]\ntls = 'ssl'\n", "'listeners[0].tls' must be one of starttls, implicit"),
        ("[[listeners]]\nmail_type = 'bulk'\n", "'listeners[0].mail_type' must be one of"),
        ("[dns]\nnameservers = '127.0.0.1'\n", "'dns.nameservers' must be a list"),
        ("[dns]\nnameservers = [1]\n", "'dns.nameservers[0]' must be str"),
        ("server = 3\n", "[server] must be a table"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        config.load(p)
    assert needle in str(exc.value)
    assert str(p) in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "absent.toml")


def test_config_path_precedence(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.config_path(None) == config.DEFAULT_PATH
    monkeypatch.setenv(config.ENV_VAR, "/etc/x.toml")
    assert config.config_path(None) == "/etc/x.toml"
    assert config.config_path("a.toml") == "a.toml"


def test_every_setting_has_help():
    rows = config.settings_table()
    keys = [r[0] for r in rows]
    assert "server.hostname" in keys and "[[listeners]].port" in keys
    assert "pools.broadcast.per_domain_rate" in keys
    assert len(keys) == len(set(keys))
    assert all(r[3] for r in rows), [r[0] for r in rows if not r[3]]

