"""The stage every scenario runs on: addresses, TLS material, local DNS, and relay factories.

Everything binds 127.0.0.0/8. Relays listen on ``relay_ip``; deliveries go to sinks on
``tx_ip`` (transactional destination ``tx.bench.test``) and ``bc_ip`` (broadcast destination
``bc.bench.test``), both on one ``sink_port`` because helo-smtp has one ``[delivery] port``.
helo-smtp finds them through MX records served by the test suite's LocalDNS; Postfix through
an inline ``transport_maps`` with the same next hops.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trustme

from bench import procs
from bench.client import Target
from bench.helo import SENDER, HeloRelay
from bench.postfix import PrivatePostfix

TX_DOMAIN = "tx.bench.test"
BC_DOMAIN = "bc.bench.test"

# Postfix sends up to 20 messages at once to one destination (default_destination_concurrency
# _limit) and does not pace; the broadcast pool is set to the same so both drain the same mix.
HELO_OVERRIDES: dict[str, dict[str, Any]] = {
    "pools": {"broadcast": {"per_domain_connections": 20, "max_connections": 50,
                            "rate": 0.0, "per_domain_rate": 0.0}},
}


class Relay(Protocol):
    """What the scenarios need from a relay under test (Postfix or helo-smtp)."""

    def target(self) -> Target: ...
    def bc_target(self) -> Target: ...
    def cpu_seconds(self) -> float: ...
    def rss_bytes(self) -> int: ...
    def queued(self) -> int: ...
    def settled(self, n: int) -> bool: ...
    def flush(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Layout:
    relay_ip: str = "127.0.0.1"
    tx_ip: str = "127.0.0.20"
    bc_ip: str = "127.0.0.21"
    ceiling_ip: str = "127.0.0.22"


@dataclass
class Env:
    """Shared pieces of one benchmark run; ``close()`` stops whatever is still running."""

    layout: Layout = field(default_factory=Layout)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="helo-bench-")))
    keep: bool = False
    cert: tuple[str, str] = ("", "")
    sink_port: int = 0
    dns: Any = None
    _stoppers: list[Any] = field(default_factory=list)

    def start(self) -> Env:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # Postfix's daemons run as the postfix user
        self.cert = self._make_cert()
        lay = self.layout
        self.sink_port = procs.free_port([lay.tx_ip, lay.bc_ip])
        self.dns = self._start_dns()
        return self

    def _make_cert(self) -> tuple[str, str]:
        ca = trustme.CA()
        cert = ca.issue_cert("relay.bench.test", self.layout.relay_ip, "localhost")
        cert_file, key_file = self.workdir / "cert.pem", self.workdir / "key.pem"
        cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_file))
        return str(cert_file), str(key_file)

    def _start_dns(self) -> Any:
        from tests.support.localdns import LocalDNS

        d = LocalDNS(zones=["bench.test."], ttl=3600)
        d.add(TX_DOMAIN, "MX", f"10 mx.{TX_DOMAIN}.")
        d.add(f"mx.{TX_DOMAIN}", "A", self.layout.tx_ip)
        d.add(BC_DOMAIN, "MX", f"10 mx.{BC_DOMAIN}.")
        d.add(f"mx.{BC_DOMAIN}", "A", self.layout.bc_ip)
        d.start()
        self._stoppers.append(d)
        return d

    def routes(self) -> dict[str, str]:
        return {TX_DOMAIN: f"{self.layout.tx_ip}:{self.sink_port}",
                BC_DOMAIN: f"{self.layout.bc_ip}:{self.sink_port}"}

    def postfix(self, name: str) -> PrivatePostfix:
        lay = self.layout
        pf = PrivatePostfix(self.workdir / name, lay.relay_ip, procs.free_port([lay.relay_ip]),
                            f"{lay.tx_ip}:{self.sink_port}", self.routes(), cert=self.cert)
        pf.setup().start()
        self._stoppers.append(pf)
        return pf

    def helo(self, name: str, whatif: tuple[str, ...] = (), start: bool = True) -> HeloRelay:
        lay = self.layout
        port, bport = procs.free_port([lay.relay_ip]), procs.free_port([lay.relay_ip])
        while bport == port:
            bport = procs.free_port([lay.relay_ip])
        relay = HeloRelay(self.workdir / name, lay.relay_ip, port, bport, self.cert,
                          self.dns.port, self.sink_port, HELO_OVERRIDES, whatif)
        relay.setup()
        if start:
            relay.start()
        self._stoppers.append(relay)
        return relay

    def track(self, thing: Any) -> Any:
        """Stop ``thing`` at ``close()`` unless it was stopped before."""
        self._stoppers.append(thing)
        return thing

    def close(self) -> None:
        while self._stoppers:
            thing = self._stoppers.pop()
            try:
                thing.stop()
            except Exception as exc:  # noqa: BLE001 - stop everything else regardless
                print(f"bench: stopping {type(thing).__name__} failed: {exc}")
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def tx_message(n: int) -> tuple[str, str, bytes]:
    from bench.client import make_message

    rcpt = f"user{n}@{TX_DOMAIN}"
    return SENDER, rcpt, make_message(SENDER, rcpt, f"m{n}")


def bc_message(n: int) -> tuple[str, str, bytes]:
    from bench.client import make_message

    rcpt = f"reader{n}@{BC_DOMAIN}"
    return SENDER, rcpt, make_message(SENDER, rcpt, f"b{n}",
                                      headers=(("X-Helo-Broadcast", "bench-newsletter"),))
