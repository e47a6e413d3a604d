"""MTA-STS (RFC 8461): a recipient domain's published TLS policy, honoured on outbound.

RFC 8461 puts enforcement on the sending MTA. For each destination domain:

1. Discovery (§3.1): the TXT record ``_mta-sts.<domain>`` (``v=STSv1; id=...``), looked up
   through the configured ``[dns]`` resolver. Exactly one ``v=STSv1`` record or no policy.
2. Fetch (§3.3): ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` with aiohttp, the host
   name resolved through ``[dns]`` too (never the system resolver), the certificate verified
   against the system CAs plus ``[delivery] tls_ca_file``, no redirects, HTTP 200 only, at most
   64 KiB, ``text/plain``. The port is ``[delivery] mta_sts_port`` (443; tests use their own).
3. Cache (§5.1): a policy is kept for its ``max_age``. Discovery is redone at most every
   ``dns.cache_max_ttl`` seconds; a new ``id`` fetches again. When discovery or the fetch
   fails, a cached policy that has not expired stays in force (an attacker who blocks DNS or
   HTTPS must not turn enforcement off).
4. Apply (§4, §5): ``enforce``: only MX hosts matching the policy's ``mx`` patterns are used
   and TLS must verify for the MX name (``TLSMode.VERIFY``); no matching host, or no verified
   TLS, defers with category ``tls`` (4.7.5). ``testing``: delivery as usual, mismatches are
   logged (TLS-RPT reports are a later step). ``none``: as no policy.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import dns.asyncresolver
import dns.exception
from aiohttp.abc import AbstractResolver, ResolveResult

from helo_smtp.config import Config
from helo_smtp.models import BounceCategory
from helo_smtp.outbound.mx import MXResolver, MXResult
from helo_smtp.outbound.outcome import local
from helo_smtp.outbound.session import TLSMode

log = logging.getLogger("helo_smtp.mtasts")

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: senders may cap the size
MAX_AGE_CAP = 31_557_600  # RFC 8461 §3.2: at most one year
FETCH_TIMEOUT = 30.0
MODES = ("enforce", "testing", "none")
CACHE_ENTRIES = 10_000  # domains remembered, as the MX cache


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy file (RFC 8461 §3.2) and the TXT ``id`` it was fetched under."""

    mode: str
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    def matches(self, host: str) -> bool:
        """RFC 8461 §4.1: an exact name, or ``*.suffix`` matching exactly one more label."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            p = pattern.rstrip(".").lower()
            if p.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == p[2:]:
                    return True
            elif host == p:
                return True
        return False


def parse_policy(text: str) -> Policy | None:
    """The policy, or None when it is not a valid STSv1 policy."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    mode = (fields.get("mode") or [""])[0]
    age = (fields.get("max_age") or [""])[0]
    mx = tuple(v for v in fields.get("mx", []) if v)
    if (fields.get("version") or [""])[0] != "STSv1" or mode not in MODES or not age.isdigit():
        return None
    if mode != "none" and not mx:
        return None
    return Policy(mode, mx, min(int(age), MAX_AGE_CAP))


def parse_txt(records: list[str]) -> str | None:
    """The ``id`` of the one ``v=STSv1`` record (RFC 8461 §3.1), else None."""
    sts = [r for r in records if r.startswith("v=STSv1")]
    if len(sts) != 1:
        return None
    for part in sts[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key == "id" and value and value.isalnum() and len(value) <= 32:
            return value
    return None


class _DNSResolver(AbstractResolver):
    """aiohttp's name resolution through our dnspython resolver (``[dns]``)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET
                      ) -> list[ResolveResult]:
        out: list[ResolveResult] = []
        for rdtype, fam in (("A", socket.AF_INET), ("AAAA", socket.AF_INET6)):
            if family not in (socket.AF_UNSPEC, fam):
                continue
            try:
                answer = await self._resolver.resolve(host, rdtype, search=False)
            except dns.exception.DNSException:
                continue
            out += [ResolveResult(hostname=host, host=r.address, port=port, family=fam,
                                  proto=0, flags=socket.AI_NUMERICHOST) for r in answer]
        if not out:
            raise OSError(f"cannot resolve {host}")
        return out

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class _Entry:
    policy: Policy | None
    expires: float  # the policy's max_age ends (monotonic)
    recheck: float  # discovery is due again (monotonic)


class MtaSts:
    """Policies of destination domains, for one delivery process."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        self._dns = MXResolver._build(cfg.dns)
        self._cache: dict[str, _Entry] = {}
        self.fetches = 0  # policy files fetched (for tests and logs)

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.cfg.delivery.tls_ca_file:
            ctx.load_verify_locations(cafile=self.cfg.delivery.tls_ca_file)
        return ctx

    async def policy(self, domain: str) -> Policy | None:
        """The policy in force for ``domain`` (None: no policy)."""
        domain = domain.rstrip(".").lower()
        now = self._clock()
        entry = self._cache.get(domain)
        if (entry is not None and now < entry.recheck
                and (entry.policy is None or now < entry.expires)):
            return entry.policy  # an expired policy is discovered and fetched again
        cached = entry.policy if entry is not None and now < entry.expires else None
        found = await self._discover(domain)
        recheck = now + max(self.cfg.dns.cache_max_ttl, 1.0)
        if found is None:  # no record, or DNS failed: a live cached policy stays
            self._cache[domain] = _Entry(cached, entry.expires if cached else 0.0, recheck)
            return cached
        if cached is not None and cached.id == found:
            entry.recheck = recheck  # type: ignore[union-attr]
            return cached
        fetched = await self._fetch(domain)
        if fetched is None:
            self._cache[domain] = _Entry(cached, entry.expires if cached else 0.0, recheck)
            return cached
        fetched = replace(fetched, id=found)
        self._cache[domain] = _Entry(fetched, now + fetched.max_age, recheck)
        while len(self._cache) > CACHE_ENTRIES:  # the oldest entry goes first (dict order)
            del self._cache[next(iter(self._cache))]
        log.info("event=mta_sts_policy domain=%s mode=%s max_age=%d mx=%s", domain,
                 fetched.mode, fetched.max_age, ",".join(fetched.mx))
        return fetched

    async def _discover(self, domain: str) -> str | None:
        try:
            answer = await self._dns.resolve(f"_mta-sts.{domain}", "TXT", search=False)
        except dns.exception.DNSException:
            return None
        return parse_txt([b"".join(r.strings).decode("ascii", "replace") for r in answer])

    async def _fetch(self, domain: str) -> Policy | None:
        host = f"mta-sts.{domain}"
        url = f"https://{host}:{self.cfg.delivery.mta_sts_port}/.well-known/mta-sts.txt"
        self.fetches += 1
        connector = aiohttp.TCPConnector(resolver=_DNSResolver(self._dns), ssl=self._ssl(),
                                         use_dns_cache=False)
        try:
            async with aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            ) as session, session.get(url, allow_redirects=False) as resp:
                body = await resp.content.read(MAX_POLICY_BYTES + 1)
                if (resp.status != 200 or len(body) > MAX_POLICY_BYTES
                        or resp.content_type != "text/plain"):
                    log.warning("event=mta_sts_fetch_refused domain=%s status=%d", domain,
                                resp.status)
                    return None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("event=mta_sts_fetch_failed domain=%s error=%s", domain,
                        type(exc).__name__)
            return None
        return parse_policy(body.decode("utf-8", "replace"))

    async def apply(self, domain: str, mode: TLSMode, resolver: Any) -> tuple[TLSMode, Any]:
        """The TLS mode and MX resolver for one delivery to ``domain``."""
        if not self.cfg.delivery.mta_sts:
            return mode, resolver
        pol = await self.policy(domain)
        if pol is None or pol.mode == "none":
            return mode, resolver
        if pol.mode == "testing":
            return mode, _Checked(resolver, pol, enforce=False)
        return TLSMode.VERIFY, _Checked(resolver, pol, enforce=True)


class _Checked:
    """An MX resolver that holds the answer against a policy (the ``Attempt`` calls
    ``resolve`` only)."""

    def __init__(self, inner: Any, policy: Policy, enforce: bool) -> None:
        self.inner = inner
        self.policy = policy
        self.enforce = enforce

    async def resolve(self, domain: str) -> MXResult:
        mx = await self.inner.resolve(domain)
        if mx.failure is not None:
            return mx
        hosts = tuple(h for h in mx.hosts if self.policy.matches(h.name))
        if len(hosts) == len(mx.hosts):
            return mx
        skipped = ",".join(h.name for h in mx.hosts if h not in hosts)
        log.warning("event=mta_sts_mx_mismatch domain=%s mode=%s hosts=%s", domain,
                    self.policy.mode, skipped)
        if not self.enforce:
            return mx
        if not hosts:
            return MXResult(domain, failure=local(
                "dns", "4.7.5", "no MX host matches the domain's MTA-STS policy",
                BounceCategory.TLS))
        return MXResult(domain, hosts, implicit=mx.implicit, ttl=mx.ttl)
