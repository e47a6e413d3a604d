"""Pick and resolve the next hop of a recipient domain (the order is in ``nexthop.py``)."""

from __future__ import annotations

from dataclasses import replace

from helo_smtp.config import Config, DeliveryConfig
from helo_smtp.devinbox.sink import DevInboxSink
from helo_smtp.models import BounceCategory
from helo_smtp.outbound.mx import MXHost, MXResolver, MXResult
from helo_smtp.outbound.nexthop import NextHop, is_ip, parse
from helo_smtp.outbound.outcome import local


class Routing:
    """The next hop for a recipient domain, from the config (and the dev inbox's port)."""

    def __init__(self, cfg: Config, dev_inbox_port: int | None = None) -> None:
        self.dev: NextHop | None = None
        if dev_inbox_port:  # dev mode as started: a reload never turns it off (or on)
            self.dev = NextHop("127.0.0.1", dev_inbox_port, False, "none", label="dev.inbox")
        d = cfg.delivery
        self.routes = {dom.lower().rstrip("."): _route(dom, hop) for dom, hop in d.routes.items()}
        self.relayhost = _relayhost(d) if d.relayhost else None

    def hop(self, domain: str) -> NextHop | None:
        if self.dev is not None:
            return self.dev
        return self.routes.get(domain.lower().rstrip("."), self.relayhost)


def _route(domain: str, text: str) -> NextHop:
    host, port, mx = parse(text, f"delivery.routes.{domain}")
    return NextHop(host, port, mx, "may", label=f"delivery.routes.{domain}")


def _relayhost(d: DeliveryConfig) -> NextHop:
    host, port, mx = parse(d.relayhost, "delivery.relayhost")
    return NextHop(host, port, mx, d.relayhost_tls, d.relayhost_username,
                   d.relayhost_password, label="delivery.relayhost")


class RoutedResolver:
    """``MXResolver`` with next hops: ``resolve(domain)`` gives the addresses to try."""

    def __init__(self, mx: MXResolver, routing: Routing, dev_inbox_port: int | None = None
                 ) -> None:
        self.mx = mx
        self.routing = routing
        self.dev_inbox_port = dev_inbox_port

    def reload(self, cfg: Config) -> None:
        """SIGHUP: new ``[dns]`` (a fresh resolver and cache), routes and relayhost."""
        if cfg.dns != self.mx.cfg:
            self.mx = MXResolver(cfg.dns)
        self.routing = Routing(cfg, self.dev_inbox_port)

    async def resolve(self, domain: str) -> MXResult:
        hop = self.routing.hop(domain)
        if hop is None:
            return await self.mx.resolve(domain)
        if not hop.mx_lookup and is_ip(hop.host):
            return MXResult(domain, (MXHost(0, hop.host, (hop.host,)),), hop=hop)
        if hop.mx_lookup:
            found = await self.mx.resolve(hop.host)
        else:
            found = await self.mx.resolve_host(hop.host)
        if found.failure is not None:
            text = f"next hop {hop.host} ({hop.label}) not found: {found.failure.text}"
            return MXResult(domain, failure=local("dns", "4.4.3", text, BounceCategory.DNS))
        return replace(found, domain=domain, hop=hop)


async def start(cfg: Config, mx: MXResolver) -> tuple[RoutedResolver, DevInboxSink | None]:
    """The delivery side's resolver; in dev mode, with the dev inbox's sink started first."""
    sink = None
    port = None
    if cfg.dev.inbox:
        sink = DevInboxSink(cfg.dev.inbox_dir, cfg.limits.max_message_size)
        port = await sink.start()
    return RoutedResolver(mx, Routing(cfg, port), port), sink


__all__ = ["RoutedResolver", "Routing", "start"]
