"""The dispatcher's DNS resolver for aiohttp: the configured nameservers (as MX lookups use),
and only addresses the SSRF guard allows (``ssrf.public``). Kept apart from ``ssrf.py`` so the
CLI, which checks URLs, does not import aiohttp."""

from __future__ import annotations

import socket

import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from helo_smtp.config import DNSConfig
from helo_smtp.events.ssrf import BlockedAddress, public


def _dns(cfg: DNSConfig) -> dns.asyncresolver.Resolver:
    if cfg.nameservers:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = list(cfg.nameservers)
        r.port = cfg.port
    else:  # production: the system's resolver configuration
        r = dns.asyncresolver.Resolver()
    r.timeout = r.lifetime = cfg.timeout
    return r


class GuardedResolver(AbstractResolver):
    """aiohttp resolver on the configured nameservers that drops refused addresses."""

    def __init__(self, dns_cfg: DNSConfig, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._dns = _dns(dns_cfg)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found: list[tuple[str, socket.AddressFamily]] = []
        for rdtype, fam in (("A", socket.AF_INET), ("AAAA", socket.AF_INET6)):
            if family not in (socket.AF_UNSPEC, fam):
                continue
            try:
                answer = await self._dns.resolve(host, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers,
                    dns.exception.Timeout):
                continue
            found += [(r.address, fam) for r in answer]
        if not found:
            raise OSError(f"{host}: no address")
        allowed = [(a, f) for a, f in found if self.allow_private or public(a)]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to non-public addresses")
        return [ResolveResult(hostname=host, host=a, port=port, family=f, proto=0,
                              flags=socket.AI_NUMERICHOST) for a, f in allowed]

    async def close(self) -> None:
        return None
