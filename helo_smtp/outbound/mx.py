"""MX resolution (RFC 5321 §5.1, RFC 7505) with dnspython on the configured nameservers.

``MXResolver(dns_cfg).resolve(domain)`` gives an ``MXResult``: the MX hosts with their
addresses, or a failure ``Outcome``:

- MX records sorted by preference; hosts of equal preference are shuffled on every read, so
  load spreads as RFC 5321 §5.1 asks.
- No MX record (NODATA): the domain itself is the implicit MX (its A/AAAA records).
- A null MX (a single ``0 .``, RFC 7505) bounces with 5.1.10, NXDOMAIN with 5.1.2, MX hosts
  that all lack an address with 5.4.4 (category ``domain_not_found`` for all three).
- SERVFAIL, REFUSED and timeouts are transient (4.4.3, category ``dns``) and never cached.
- CNAMEs are followed (dnspython follows a chain inside one answer; a chain that stops short
  is queried again at its end); a truncated UDP answer is retried over TCP by dnspython.
- Answers, positive and negative, are cached for their TTL (negative: the SOA minimum,
  RFC 2308 §5), never longer than ``dns.cache_max_ttl``.

The resolver is built with ``configure=False`` on ``dns.nameservers``/``dns.port``; only an empty
``nameservers`` list (production) reads the system configuration.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from helo_smtp.config import DNSConfig
from helo_smtp.models import BounceCategory
from helo_smtp.outbound.outcome import Outcome, local
from helo_smtp.outbound.translate import dns_kind, from_exception
from helo_smtp.runtime import metrics

MAX_CNAME_HOPS = 8
MAX_MX_HOSTS = 10  # hosts looked up per domain; more is a misconfiguration
CACHE_ENTRIES = 10_000
_NAME_ERRORS = (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong,
                dns.name.BadEscape, dns.name.IDNAException)


@dataclass(frozen=True, slots=True)
class Route:
    """One address to try: the MX host's name (for TLS SNI and logs) and one of its IPs."""

    host: str
    ip: str
    preference: int


@dataclass(frozen=True, slots=True)
class MXHost:
    preference: int
    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MXResult:
    domain: str
    hosts: tuple[MXHost, ...] = ()
    failure: Outcome | None = None
    implicit: bool = False  # no MX record: the domain's own addresses
    ttl: float = field(default=0.0, compare=False)

    def routes(self, limit: int, rng: random.Random | None = None) -> list[Route]:
        """Up to ``limit`` addresses in preference order, equal preferences shuffled."""
        shuffle = (rng or random).shuffle
        by_pref: dict[int, list[MXHost]] = {}
        for h in self.hosts:
            by_pref.setdefault(h.preference, []).append(h)
        out: list[Route] = []
        for pref in sorted(by_pref):
            group = list(by_pref[pref])
            shuffle(group)
            out += [Route(h.name, ip, pref) for h in group for ip in h.addresses]
        return out[:limit]


def _name(text: str) -> str:
    return text.rstrip(".").lower()


def _soa_ttl(response: dns.message.Message | None) -> float:
    """Negative-caching TTL (RFC 2308 §5): min(SOA TTL, SOA minimum), 0 when unknown."""
    if response is None:
        return 0.0
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


class MXResolver:
    """Resolves delivery routes for recipient domains; one instance per relay."""

    def __init__(self, dns_cfg: DNSConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = dns_cfg
        self._clock = clock  # for cache ages; injectable for tests
        self._resolver = self._build(dns_cfg)
        self._cache: OrderedDict[str, tuple[float, MXResult]] = OrderedDict()

    @staticmethod
    def _build(cfg: DNSConfig) -> dns.asyncresolver.Resolver:
        if cfg.nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = list(cfg.nameservers)
            r.port = cfg.port
        else:  # production only: tests always name their nameserver
            r = dns.asyncresolver.Resolver()
        r.timeout = cfg.timeout
        r.lifetime = cfg.timeout
        r.cache = None  # we cache whole results, with our cap and negative answers
        return r

    async def resolve(self, domain: str) -> MXResult:
        """The routes for ``domain`` (cached), or the failure that stops delivery to it."""
        key = _name(domain)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            self._cache.move_to_end(key)
            return hit[1]
        result = await self._lookup(key)
        if result.failure is not None and not result.failure.permanent:
            return result  # transient: never cached
        ttl = min(result.ttl, self.cfg.cache_max_ttl)
        if ttl > 0:
            self._cache[key] = (self._clock() + ttl, result)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return result

    async def _lookup(self, domain: str) -> MXResult:
        try:
            records, ttl = await self._query(domain, "MX")
        except dns.resolver.NoAnswer as exc:
            return await self._implicit(domain, _soa_ttl(exc.kwargs.get("response")))
        except dns.resolver.NXDOMAIN as exc:
            metrics.DNS_FAILURES.labels(kind="nxdomain").inc()
            ttl = max((_soa_ttl(r) for r in exc.responses().values()), default=0.0)
            return MXResult(domain, failure=from_exception(exc, "dns"), ttl=ttl)
        except _NAME_ERRORS:
            return MXResult(domain, failure=local("dns", "5.1.2", "invalid domain name",
                                                  BounceCategory.DOMAIN_NOT_FOUND), ttl=0.0)
        except dns.exception.DNSException as exc:
            metrics.DNS_FAILURES.labels(kind=dns_kind(exc)).inc()
            return MXResult(domain, failure=from_exception(exc, "dns"))
        mx = [r for r in records if r.exchange != dns.name.root]
        if not mx:  # RFC 7505: the domain accepts no mail
            return MXResult(domain, failure=local(
                "dns", "5.1.10", "domain accepts no mail (null MX, RFC 7505)",
                BounceCategory.DOMAIN_NOT_FOUND), ttl=ttl)
        mx.sort(key=lambda r: r.preference)
        pairs = [(int(r.preference), _name(r.exchange.to_text())) for r in mx[:MAX_MX_HOSTS]]
        return await self._hosts(domain, pairs, ttl, implicit=False)

    async def _implicit(self, domain: str, negative_ttl: float) -> MXResult:
        """RFC 5321 §5.1: no MX records, so the domain is its own MX at preference 0."""
        return await self._hosts(domain, [(0, domain)], negative_ttl, implicit=True)

    async def _hosts(self, domain: str, pairs: list[tuple[int, str]], ttl: float,
                     implicit: bool) -> MXResult:
        looked = await asyncio.gather(*(self._addresses(name) for _, name in pairs))
        hosts = []
        transient: Outcome | None = None
        for (pref, name), (addrs, a_ttl, failure) in zip(pairs, looked, strict=True):
            if addrs:
                hosts.append(MXHost(pref, name, addrs))
                ttl = min(ttl, a_ttl) if ttl else a_ttl
            elif failure is not None:
                transient = transient or failure
        if hosts:
            return MXResult(domain, tuple(hosts), implicit=implicit, ttl=ttl)
        if transient is not None:
            return MXResult(domain, failure=transient)
        if implicit:
            failure = local("dns", "5.1.2", "domain has no MX or address records",
                            BounceCategory.DOMAIN_NOT_FOUND)
        else:
            failure = local("dns", "5.4.4", "no MX host of the domain has an address",
                            BounceCategory.DOMAIN_NOT_FOUND)
        return MXResult(domain, failure=failure, ttl=ttl)

    async def _addresses(self, host: str) -> tuple[tuple[str, ...], float, Outcome | None]:
        """(IPv4 then IPv6 addresses, TTL, transient failure when none could be learnt)."""
        results = await asyncio.gather(self._query(host, "A"), self._query(host, "AAAA"),
                                       return_exceptions=True)
        addrs: list[str] = []
        ttls: list[float] = []
        failure: Outcome | None = None
        for res in results:
            if isinstance(res, dns.resolver.NXDOMAIN | dns.resolver.NoAnswer):
                continue
            if isinstance(res, dns.exception.DNSException):
                metrics.DNS_FAILURES.labels(kind=dns_kind(res)).inc()
                failure = from_exception(res, "dns")
                continue
            if isinstance(res, BaseException):
                raise res
            records, ttl = res
            addrs += [r.address for r in records]
            ttls.append(ttl)
        ttl = min(ttls) if ttls else 0.0
        return tuple(dict.fromkeys(addrs)), ttl, (None if addrs else failure)

    async def _query(self, name: str, rdtype: str) -> tuple[list[object], float]:
        """Records of ``rdtype`` at ``name`` and their TTL, following CNAMEs."""
        qname = dns.name.from_text(name)
        for _ in range(MAX_CNAME_HOPS):
            try:
                answer = await self._resolver.resolve(qname, rdtype, search=False)
            except dns.resolver.NoAnswer as exc:
                response = exc.kwargs.get("response")
                chained = response.resolve_chaining() if response is not None else None
                if chained is None or chained.canonical_name == qname:
                    raise
                qname = chained.canonical_name  # the chain stopped short: follow it
                continue
            ttl = max(0.0, answer.expiration - time.time())
            return list(answer), ttl
        raise dns.resolver.NoAnswer()


__all__ = ["MXHost", "MXResolver", "MXResult", "Route"]
