"""Start the real relay in-process for tests: its own asyncio loop in a thread, real sockets.

    handle = relay_factory(deliver=True, limits={"max_recipients": 50})
    handle.ports["submission"], handle.store, handle.tenant.username / .secret
    handle.run(coro)          # run a coroutine on the relay's loop
    handle.stop()             # drain and stop (also done at fixture teardown)
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from helo_smtp import config as config_mod
from helo_smtp import keys
from helo_smtp.config import Config
from helo_smtp.models import Account, AccountStatus, Channel, Domain
from helo_smtp.runtime.daemon import Relay, lifetimes
from helo_smtp.store import Store
from tests.support.net import POOLS

T = TypeVar("T")

SENDER_DOMAIN = "sender.test"


class LoopThread:
    """An asyncio loop running in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="relay-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@dataclass
class Tenant:
    """An account with a verified domain, a channel and a channel-scoped credential."""

    account: Account
    domain: Domain
    channel: Channel
    username: str
    secret: str
    sender: str  # an address on the verified domain


def make_tenant(store: Store, name: str = "acme", domain: str = SENDER_DOMAIN,
                status: AccountStatus = AccountStatus.ACTIVE, track_opens: bool = False,
                track_links: bool = False, dkim_bits: int = 1024) -> Tenant:
    """Create a ready-to-send tenant directly in the store (dkim_bits small for speed)."""
    acc = store.accounts.create(name, status)
    private_pem, public_b64 = keys.generate_dkim_key(dkim_bits)
    dom = store.domains.add(acc.id, domain, keys.new_verify_token(), "sel1", private_pem,
                            public_b64)
    store.domains.set_verified(dom.id)
    ch = store.channels.create(acc.id, "main", track_opens, track_links)
    cred, secret = store.credentials.create(acc.id, ch.id, "test")
    return Tenant(acc, store.domains.require(dom.id), ch, cred.username, secret,
                  f"app@{domain}")


def base_config(tmp_path: Path, *, dns_port: int, mx_port: int, cert: tuple[str, str],
                **overrides: Any) -> Config:
    """A config for tests: loopback listeners on port 0, local DNS, sinks on ``mx_port``.

    ``overrides`` are TOML-shaped sections merged over the defaults, e.g.
    ``limits={"max_recipients": 5}`` or ``listeners=[...]``.
    """
    data: dict[str, Any] = {
        "server": {"hostname": "relay.test", "database": str(tmp_path / "relay.db"),
                   "node_id": "test-node", "free_space_margin_mb": 0, "shutdown_grace": 5.0},
        "tls": {"cert_file": cert[0], "key_file": cert[1], "handshake_timeout": 5.0},
        "listeners": [
            {"name": "submission", "address": "127.0.0.1", "port": 0, "tls": "starttls",
             "mail_type": "header"},
            {"name": "submissions", "address": "127.0.0.1", "port": 0, "tls": "implicit",
             "mail_type": "header"},
            {"name": "broadcast", "address": "127.0.0.1", "port": 0, "tls": "starttls",
             "mail_type": "broadcast"},
        ],
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 2.0},
        "delivery": {"port": mx_port, "connect_timeout": 5.0, "command_timeout": 5.0,
                     "data_timeout": 10.0, "total_deadline": 20.0, "retry_base": 300.0,
                     "lease_seconds": 60.0},
        "pools": {
            "transactional": {"source_addresses": POOLS["transactional"],
                              "helo_name": "tx.relay.test"},
            "broadcast": {"source_addresses": POOLS["broadcast"], "helo_name": "bc.relay.test",
                          "rate": 0.0, "per_domain_rate": 0.0},
        },
        "http": {"listen": "127.0.0.1:0", "public_url": "http://127.0.0.1:8025",
                 "secret": "test-secret"},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            merged = copy.deepcopy(data[section])
            for k, v in values.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            data[section] = merged
        else:
            data[section] = values
    return config_mod.from_dict(data, "<test>")


class RelayHandle:
    """A running relay plus the tenant created for it."""

    def __init__(self, cfg: Config, deliver: bool = True, tenant: bool = True) -> None:
        self.cfg = cfg
        self.lt = LoopThread()
        self.store = Store.open(cfg.server.database, lifetimes(cfg))
        self.tenant = make_tenant(self.store) if tenant else None
        self.relay = Relay(cfg, self.store, deliver=deliver)
        self.lt.run(self.relay.start())
        self.ports = self.relay.ports
        self._stopped = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.lt.run(coro, timeout)

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` on the connection the relay's own writes use (its loop's), e.g. to
        plant a real SQLite fault there."""
        return self.run(self.store.db.awrite(fn))

    def stop(self, grace: float = 2.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.lt.run(self.relay.stop(grace), timeout=grace + 20)
        finally:
            self.lt.close()
            self.store.close()
