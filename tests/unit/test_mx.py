"""MX resolution against the local DNS server (real UDP/TCP queries, never the system)."""

from __future__ import annotations

import random

import pytest

from helo_smtp.config import DNSConfig
from helo_smtp.models import BounceCategory as C
from helo_smtp.outbound.mx import MXResolver
from helo_smtp.runtime import metrics
from tests.support.metricvalue import sample
from tests.support.net import MX_IPS

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def resolver(dns_srv, clock=None, **kw) -> MXResolver:
    cfg = DNSConfig(nameservers=["127.0.0.1"], port=dns_srv.port, timeout=kw.pop("timeout", 1.0),
                    **kw)
    return MXResolver(cfg, clock=clock or Clock())


def dns_failures(kind: str) -> float:
    return sample(metrics.DNS_FAILURES, "_total", kind=kind)


def queries(dns_srv, name: str) -> int:
    return sum(1 for q in dns_srv.queries if q[0].rstrip(".") == name)


async def test_routes_follow_preference(dns):
    dns.add("pref.test", "MX", "20 b.pref.test.", "10 a.pref.test.", "30 c.pref.test.")
    dns.add("a.pref.test", "A", "127.0.9.1", "127.0.9.2")
    dns.add("b.pref.test", "A", "127.0.9.3")
    dns.add("c.pref.test", "A", "127.0.9.4")
    res = await resolver(dns).resolve("PREF.test.")
    assert res.failure is None and not res.implicit
    routes = res.routes(10)
    assert [r.host for r in routes][:2] == ["a.pref.test", "a.pref.test"]
    assert {r.ip for r in routes[:2]} == {"127.0.9.1", "127.0.9.2"}
    assert [(r.host, r.ip, r.preference) for r in routes[2:]] == [
        ("b.pref.test", "127.0.9.3", 20), ("c.pref.test", "127.0.9.4", 30)]


async def test_equal_preferences_are_shuffled(dns):
    dns.add("tie.test", "MX", "10 a.tie.test.", "10 b.tie.test.", "20 c.tie.test.")
    for h, ip in (("a", "127.0.9.1"), ("b", "127.0.9.2"), ("c", "127.0.9.3")):
        dns.add(f"{h}.tie.test", "A", ip)
    res = await resolver(dns).resolve("tie.test")
    rng = random.Random(1)
    firsts = {res.routes(5, rng)[0].host for _ in range(40)}
    assert firsts == {"a.tie.test", "b.tie.test"}
    assert all(res.routes(5, rng)[-1].host == "c.tie.test" for _ in range(10))


async def test_route_count_is_capped(dns):
    dns.add("many.test", "MX", *(f"{i} h{i}.many.test." for i in range(8)))
    for i in range(8):
        dns.add(f"h{i}.many.test", "A", f"127.0.9.{i + 1}")
    res = await resolver(dns).resolve("many.test")
    assert [r.host for r in res.routes(5)] == [f"h{i}.many.test" for i in range(5)]


async def test_no_mx_means_the_domain_is_its_own_mx(dns):
    dns.add("implicit.test", "A", "127.0.9.7")
    res = await resolver(dns).resolve("implicit.test")
    assert res.implicit and [(r.host, r.ip) for r in res.routes(5)] == [
        ("implicit.test", "127.0.9.7")]


async def test_null_mx_bounces_with_5_1_10(dns):
    res = await resolver(dns).resolve("nullmx.test")
    f = res.failure
    assert (f.status, f.category, f.permanent, f.stage) == ("5.1.10", C.DOMAIN_NOT_FOUND,
                                                            True, "dns")
    assert res.routes(5) == []


async def test_nxdomain_bounces_with_5_1_2(dns):
    before = dns_failures("nxdomain")
    f = (await resolver(dns).resolve("nowhere.test")).failure
    assert (f.status, f.category, f.permanent) == ("5.1.2", C.DOMAIN_NOT_FOUND, True)
    assert dns_failures("nxdomain") == before + 1


async def test_no_mx_and_no_address_bounces(dns):
    dns.add("txtonly.test", "TXT", '"v=spf1 -all"')
    f = (await resolver(dns).resolve("txtonly.test")).failure
    assert (f.status, f.category, f.permanent) == ("5.1.2", C.DOMAIN_NOT_FOUND, True)


async def test_mx_hosts_without_addresses_bounce_with_5_4_4(dns):
    dns.add("dangling.test", "MX", "10 gone.dangling.test.")
    f = (await resolver(dns).resolve("dangling.test")).failure
    assert (f.status, f.category, f.permanent) == ("5.4.4", C.DOMAIN_NOT_FOUND, True)


async def test_servfail_defers_and_is_counted(dns):
    before = dns_failures("servfail")
    f = (await resolver(dns).resolve("broken.test")).failure
    assert (f.status, f.category, f.permanent) == ("4.4.3", C.DNS, False)
    assert dns_failures("servfail") == before + 1


async def test_a_timeout_defers(dns):
    dns.drop.add("silent.test")
    before = dns_failures("timeout")
    f = (await resolver(dns, timeout=0.3).resolve("silent.test")).failure
    assert (f.status, f.category, f.permanent) == ("4.4.3", C.DNS, False)
    assert dns_failures("timeout") == before + 1


async def test_an_mx_host_that_times_out_defers_when_no_other_has_an_address(dns):
    dns.add("halfdown.test", "MX", "10 mx.silent-host.test.")
    dns.drop.add("silent-host.test")
    f = (await resolver(dns, timeout=0.3).resolve("halfdown.test")).failure
    assert (f.status, f.permanent) == ("4.4.3", False)


async def test_cnames_are_followed(dns):
    dns.add("alias.test", "CNAME", "example.test.")
    res = await resolver(dns).resolve("alias.test")
    assert [r.host for r in res.routes(5)] == ["mx1.example.test", "mx2.example.test"]
    dns.add("hostalias.test", "MX", "10 mail.hostalias.test.")
    dns.add("mail.hostalias.test", "CNAME", "mx3.example.test.")
    res = await resolver(dns).resolve("hostalias.test")
    assert [(r.host, r.ip) for r in res.routes(5)] == [("mail.hostalias.test", MX_IPS[2])]


async def test_truncated_answers_are_retried_over_tcp(dns):
    dns.add("big.test", "MX", "10 mx1.example.test.")
    dns.force_tc.add("big.test")
    res = await resolver(dns).resolve("big.test")
    assert [r.host for r in res.routes(5)] == ["mx1.example.test"]
    assert ("big.test.", "MX", "tcp") in dns.queries


async def test_answers_are_cached_for_their_ttl(dns):
    dns.add("cached.test", "MX", "10 mx1.example.test.", ttl=30)
    clock = Clock()
    r = resolver(dns, clock)
    await r.resolve("cached.test")
    n = queries(dns, "cached.test")
    clock.t += 29
    await r.resolve("cached.test")
    assert queries(dns, "cached.test") == n  # from the cache
    clock.t += 2
    await r.resolve("cached.test")
    assert queries(dns, "cached.test") == n + 1


async def test_cache_time_is_capped(dns):
    dns.add("longttl.test", "MX", "10 mx1.example.test.", ttl=86400)
    clock = Clock()
    r = resolver(dns, clock, cache_max_ttl=100.0)
    await r.resolve("longttl.test")
    n = queries(dns, "longttl.test")
    clock.t += 101
    await r.resolve("longttl.test")
    assert queries(dns, "longttl.test") == n + 1


async def test_negative_answers_are_cached_until_the_soa_minimum(dns):
    clock = Clock()
    r = resolver(dns, clock)
    assert (await r.resolve("later.test")).failure.status == "5.1.2"
    dns.add("later.test", "MX", "10 mx1.example.test.")
    clock.t += 30
    assert (await r.resolve("later.test")).failure.status == "5.1.2"  # cached NXDOMAIN
    clock.t += 31  # the SOA minimum of the local zone is 60 s
    assert (await r.resolve("later.test")).failure is None


async def test_transient_failures_are_never_cached(dns):
    r = resolver(dns, Clock())
    dns.servfail.add("flaky.test")
    assert (await r.resolve("flaky.test")).failure.status == "4.4.3"
    dns.servfail.discard("flaky.test")
    dns.add("flaky.test", "MX", "10 mx1.example.test.")
    assert (await r.resolve("flaky.test")).failure is None
