"""MTA-STS on outbound (RFC 8461): discovery through the local DNS server, the policy fetched
from a local HTTPS server whose certificate the test CA issued, cached for ``max_age``;
``enforce`` restricts the MX hosts and requires verified TLS (else deferred, category tls),
``testing`` only logs, ``none`` changes nothing."""

from __future__ import annotations

import time

import pytest

from tests.support.net import MX_IPS, NET, common_free_port
from tests.support.policyserver import PolicyServer, policy

GOOD_IP, BAD_IP = NET + "20", NET + "21"
DOMAINS = ["sts-ok.test", "sts-mismatch.test", "sts-badcert.test", "sts-notls.test",
           "sts-testing.test", "sts-none.test", "sts-cache.test", "sts-short.test",
           "sts-wrongcert.test"]


@pytest.fixture(scope="module")
def policy_servers(ca):
    port = common_free_port([GOOD_IP, BAD_IP])
    good = PolicyServer(GOOD_IP, port, ca, [f"mta-sts.{d}" for d in DOMAINS]).start()
    bad = PolicyServer(BAD_IP, port, ca, ["somewhere-else.test"]).start()  # wrong name
    yield good, bad
    good.stop()
    bad.stop()


@pytest.fixture
def sts(policy_servers, dns, ca, tmp_path, scenario):
    """(start(), publish(domain, mode, mx, max_age, server="good")): a relay that trusts the
    test CA for policy hosts and MX certificates, and the policies it will find."""
    good, bad = policy_servers
    good.reset()
    bad.reset()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def publish(domain: str, mode: str, mx: list[str], max_age: int = 86400,
                server: str = "good", txt_id: str = "20261204") -> PolicyServer:
        srv = good if server == "good" else bad
        dns.add(f"_mta-sts.{domain}", "TXT", f'"v=STSv1; id={txt_id};"')
        dns.add(f"mta-sts.{domain}", "A", srv.ip)
        srv.policies[f"mta-sts.{domain}"] = (200, policy(mode, mx, max_age), "text/plain")
        return srv

    def start(dns_cfg: dict | None = None, **delivery):
        return scenario(delivery={"tls_ca_file": str(ca_file), "mta_sts_port": good.port,
                                  **delivery}, dns=dns_cfg or {})

    return start, publish, good


def _mx(dns, domain: str, host: str, ip: str | None = None) -> None:
    dns.add(domain, "MX", f"10 {host}.")
    if ip is not None:
        dns.add(host, "A", ip)


def _attempt(sc, mid: str, address: str) -> dict:
    return [a for a in sc.attempts(mid) if a["address"] == address][-1]


def test_enforce_delivers_only_to_matching_hosts_with_verified_tls(sts, dns, sinks):
    start, publish, good = sts
    _mx(dns, "sts-ok.test", "mx3.example.test")  # certificate valid for mx3.example.test
    publish("sts-ok.test", "enforce", ["mx3.example.test"])
    _mx(dns, "sts-mismatch.test", "mx3.example.test")
    publish("sts-mismatch.test", "enforce", ["*.elsewhere.test"])
    _mx(dns, "sts-badcert.test", "wrongname.sts-badcert.test", MX_IPS[2])  # cert: mx3...
    publish("sts-badcert.test", "enforce", ["*.sts-badcert.test"])
    _mx(dns, "sts-notls.test", "mx1.example.test")  # mx1 offers no STARTTLS
    publish("sts-notls.test", "enforce", ["mx1.example.test"])
    sc = start()
    rcpts = ["a@sts-ok.test", "b@sts-mismatch.test", "c@sts-badcert.test", "d@sts-notls.test"]
    mid = sc.submit(rcpts)
    sc.wait(mid, delivered=1, deferred=3)

    assert [(m["rcpt_tos"], m["tls"]) for m in sinks[2].h.messages] == [(["a@sts-ok.test"], True)]
    assert sinks[0].h.messages == []
    ok = _attempt(sc, mid, "a@sts-ok.test")
    assert (ok["outcome"], ok["tls"], ok["remote_host"]) == ("delivered", 1, "mx3.example.test")
    mismatch = _attempt(sc, mid, "b@sts-mismatch.test")
    assert (mismatch["outcome"], mismatch["status"], mismatch["category"]) == (
        "deferred", "4.7.5", "tls")
    assert "MTA-STS" in mismatch["text"]
    badcert = _attempt(sc, mid, "c@sts-badcert.test")
    assert (badcert["stage"], badcert["category"]) == ("starttls", "tls")
    assert "certificate" in badcert["text"].lower()
    notls = _attempt(sc, mid, "d@sts-notls.test")
    assert (notls["stage"], notls["status"], notls["category"]) == ("starttls", "4.7.4", "tls")
    assert [c[1] for c in sinks[0].h.commands].count("MAIL") == 0  # never sent in plaintext
    assert good.hits == {f"mta-sts.{d}": 1 for d in
                         ("sts-ok.test", "sts-mismatch.test", "sts-badcert.test",
                          "sts-notls.test")}


def test_testing_and_none_modes_deliver_as_usual(sts, dns, sinks):
    start, publish, _ = sts
    _mx(dns, "sts-testing.test", "wrongname.sts-testing.test", MX_IPS[2])
    publish("sts-testing.test", "testing", ["*.elsewhere.test"])
    _mx(dns, "sts-none.test", "mx1.example.test")
    publish("sts-none.test", "none", [])
    sc = start()
    mid = sc.submit(["a@sts-testing.test", "b@sts-none.test"])
    sc.wait(mid, delivered=2)
    assert [(m["rcpt_tos"], m["tls"]) for m in sinks[2].h.messages] == [
        (["a@sts-testing.test"], True)]  # opportunistic TLS: the certificate is not checked
    assert [(m["rcpt_tos"], m["tls"]) for m in sinks[0].h.messages] == [
        (["b@sts-none.test"], False)]


def test_a_policy_host_with_a_bad_certificate_is_no_policy(sts, dns, sinks):
    """RFC 8461 §3.3: the policy is only taken from a host whose certificate verifies."""
    start, publish, _ = sts
    _mx(dns, "sts-wrongcert.test", "mx1.example.test")
    bad = publish("sts-wrongcert.test", "enforce", ["*.elsewhere.test"], server="bad")
    sc = start()
    mid = sc.submit(["a@sts-wrongcert.test"])
    sc.wait(mid, delivered=1)
    assert bad.hits == {}  # the TLS handshake failed before any request
    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [["a@sts-wrongcert.test"]]


def test_policy_is_cached_for_max_age_and_outlives_its_server(sts, dns, sinks):
    start, publish, good = sts
    _mx(dns, "sts-cache.test", "mx3.example.test")
    publish("sts-cache.test", "enforce", ["mx3.example.test"])
    _mx(dns, "sts-short.test", "mx3.example.test")
    publish("sts-short.test", "enforce", ["mx3.example.test"], max_age=1)
    sc = start()
    first = sc.submit(["a@sts-cache.test", "b@sts-short.test"])
    sc.wait(first, delivered=2)
    # the policy server goes away: the cached policy (max_age one day) still holds
    good.policies["mta-sts.sts-cache.test"] = (500, "down", "text/plain")
    time.sleep(1.2)  # past sts-short's max_age of one second
    second = sc.submit(["c@sts-cache.test", "d@sts-short.test"])
    sc.wait(second, delivered=2)
    assert good.hits["mta-sts.sts-cache.test"] == 1
    assert good.hits["mta-sts.sts-short.test"] == 2  # expired: fetched again
    assert len(sinks[2].h.messages) == 4


def test_mta_sts_can_be_turned_off(sts, dns, sinks):
    start, publish, good = sts
    _mx(dns, "sts-mismatch.test", "mx3.example.test")
    publish("sts-mismatch.test", "enforce", ["*.elsewhere.test"])
    sc = start(mta_sts=False)
    mid = sc.submit(["a@sts-mismatch.test"])
    sc.wait(mid, delivered=1)
    assert good.hits == {}


def test_a_new_policy_id_is_fetched_at_the_next_discovery(sts, dns, sinks):
    """RFC 8461 §3.1: a changed TXT ``id`` means a new policy; discovery is redone every
    ``dns.cache_max_ttl`` seconds (here 1 s)."""
    start, publish, good = sts
    _mx(dns, "sts-cache.test", "mx3.example.test")
    publish("sts-cache.test", "enforce", ["mx3.example.test"], txt_id="1")
    sc = start(dns_cfg={"cache_max_ttl": 0.0})
    first = sc.submit(["a@sts-cache.test"])
    sc.wait(first, delivered=1)
    dns.remove("_mta-sts.sts-cache.test", "TXT")
    publish("sts-cache.test", "enforce", ["*.elsewhere.test"], txt_id="2")
    time.sleep(1.1)
    second = sc.submit(["b@sts-cache.test"])
    sc.wait(second, deferred=1)
    assert good.hits["mta-sts.sts-cache.test"] == 2
    assert _attempt(sc, second, "b@sts-cache.test")["category"] == "tls"

