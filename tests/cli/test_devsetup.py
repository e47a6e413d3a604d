"""The dev bootstrap that `serve` runs with server.dev_bootstrap = true."""

from __future__ import annotations

from helo_smtp import config, credsecret
from helo_smtp.cli import devsetup
from helo_smtp.store import Store
from tests.support.configfile import dumps


def _cfg(tmp_path, hostname="localhost", bootstrap=True, listeners=None):
    data = {"server": {"hostname": hostname, "dev_bootstrap": bootstrap,
                       "database": str(tmp_path / "dev.db")},
            "listeners": listeners or [
                {"name": "broadcast", "address": "127.0.0.1", "port": 2587,
                 "mail_type": "broadcast"},
                {"name": "submissions", "address": "127.0.0.1", "port": 4465,
                 "tls": "implicit"},
                {"name": "submission", "address": "0.0.0.0", "port": 2525}]}
    path = tmp_path / "dev.toml"
    path.write_text(dumps(data))
    return config.load(path)


def test_bootstrap_creates_a_ready_tenant_once(tmp_path):
    cfg = _cfg(tmp_path)
    store = Store.open(cfg.server.database)
    try:
        lines: list[str] = []
        t = devsetup.bootstrap(store, cfg, echo=lines.append, dkim_bits=1024)
        assert t is not None
        assert (t.account.name, t.channel.name, t.domain.name) == ("dev", "dev",
                                                                   "dev.localhost")
        dom = store.domains.require("dev.localhost")
        assert dom.verified and dom.account_id == t.account.id
        assert store.domains.verified_for(t.account.id, "dev.localhost") is not None
        cred, stored = store.credentials.lookup(t.username)
        assert cred.channel_id == t.channel.id and credsecret.verify_secret(t.secret, stored)
        text = "\n".join(lines)
        assert "VERIFIED WITHOUT DNS" in text and t.secret in text and t.username in text
        # The swaks line uses the STARTTLS transactional listener, reachable on loopback.
        assert t.swaks.startswith("swaks --server 127.0.0.1:2525 --tls ")
        assert f"--auth-user {t.username}" in t.swaks and "--from dev@dev.localhost" in t.swaks
        assert t.swaks in text
        # Second start: accounts exist, nothing is created or printed.
        again: list[str] = []
        assert devsetup.bootstrap(store, cfg, echo=again.append, dkim_bits=1024) is None
        assert again == [] and len(store.accounts.list()) == 1
    finally:
        store.close()


def test_bootstrap_is_off_by_default_and_skips_a_used_database(tmp_path):
    off = _cfg(tmp_path, bootstrap=False)
    store = Store.open(off.server.database)
    try:
        assert devsetup.bootstrap(store, off, echo=lambda s: None) is None
        assert store.accounts.list() == []
        store.accounts.create("real")
        on = _cfg(tmp_path)
        assert devsetup.bootstrap(store, on, echo=lambda s: None) is None
        assert store.domains.list() == []
    finally:
        store.close()


def test_dev_domain_and_implicit_tls_swaks(tmp_path):
    assert devsetup.dev_domain("relay.example.com") == "relay.example.com"
    assert devsetup.dev_domain("localhost") == "dev.localhost"
    assert devsetup.dev_domain("127.0.0.1") == "dev.localhost"
    cfg = _cfg(tmp_path, listeners=[{"name": "s", "address": "127.0.0.5", "port": 4465,
                                     "tls": "implicit"}])
    cmd = devsetup.swaks_command(cfg, "u", "s3cret", "dev@x.test")
    assert cmd.startswith("swaks --server 127.0.0.5:4465 --tlsc ")
