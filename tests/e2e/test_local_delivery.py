"""Local delivery (SPEC §15): ``[delivery] relayhost`` with AUTH over STARTTLS, implicit TLS
and plaintext against a real aiosmtpd smarthost; ``[host]`` versus MX lookup; per-domain
``[delivery.routes]`` before the relayhost; a misconfigured smarthost defers, never bounces."""

from __future__ import annotations

import pytest

from tests.support.authsink import IGNORE_PLAINTEXT_AUTH, AuthSink
from tests.support.net import MX_IPS, NET
from tests.support.sinks import Sink

pytestmark = pytest.mark.filterwarnings(IGNORE_PLAINTEXT_AUTH)

SMART_IP = NET + "20"
USERS = {"relay-user": "s3cret"}


@pytest.fixture
def smarthost(ca):
    made: list[AuthSink] = []

    def start(tls: str) -> AuthSink:
        box = AuthSink(SMART_IP, tls=tls, ca=ca, users=USERS).start()
        made.append(box)
        return box

    yield start
    for box in made:
        box.stop()


def _relayhost(box: AuthSink, tls: str, password: str = "s3cret") -> dict[str, object]:
    return {"relayhost": f"[{SMART_IP}]:{box.port}", "relayhost_username": "relay-user",
            "relayhost_password": password, "relayhost_tls": tls}


@pytest.mark.parametrize("tls", ["starttls", "implicit", "none"])
def test_relayhost_with_auth(scenario, smarthost, sinks, tls):
    box = smarthost(tls)
    sc = scenario(delivery=_relayhost(box, tls))
    # nowhere.invalid has no MX at all: only the smarthost can take it
    mid = sc.submit(["ann@example.test", "bob@nowhere.invalid"])
    sc.wait(mid, delivered=2)
    assert set(box.logins) == {("relay-user", True)}  # one session per domain group
    got = sorted(r for m in box.messages for r in m["rcpt_tos"])
    assert got == ["ann@example.test", "bob@nowhere.invalid"]
    assert all(m["auth"] == "relay-user" and m["tls"] == (tls != "none") for m in box.messages)
    assert all(b"DKIM-Signature:" in m["data"] for m in box.messages)
    assert not any(s.h.messages for s in sinks)  # nothing went to the MX hosts
    hosts = {a["remote_ip"] for a in sc.attempts(mid)}
    assert hosts == {SMART_IP}


def test_wrong_password_defers_and_suppresses_nothing(scenario, smarthost):
    box = smarthost("starttls")
    sc = scenario(delivery=_relayhost(box, "starttls", password="wrong"))
    mid = sc.submit(["ann@example.test"])
    sc.wait(mid, deferred=1)
    (a,) = sc.attempts(mid)
    assert (a["stage"], a["status"]) == ("auth", "4.7.0")
    assert "next hop refused AUTH" in a["text"] and "535" in a["text"]
    # aiosmtplib tries each mechanism offered (PLAIN, then LOGIN): all refused
    assert box.logins and not any(ok for _, ok in box.logins) and box.messages == []
    assert sc.store.suppressions.list(sc.relay.tenant.channel.id) == []


def test_required_starttls_missing_never_sends_the_password(scenario, smarthost):
    box = smarthost("none")  # offers no STARTTLS
    sc = scenario(delivery=_relayhost(box, "starttls"))
    mid = sc.submit(["ann@example.test"])
    sc.wait(mid, deferred=1)
    (a,) = sc.attempts(mid)
    assert (a["stage"], a["status"], a["category"]) == ("starttls", "4.7.4", "tls")
    assert box.logins == []  # the credentials never crossed in clear


def test_unresolvable_relayhost_defers(scenario):
    sc = scenario(delivery={"relayhost": "[smarthost.nxdomain.test]:2525"})
    mid = sc.submit(["ann@example.test"])
    sc.wait(mid, deferred=1)
    (a,) = sc.attempts(mid)
    assert (a["stage"], a["status"], a["category"]) == ("dns", "4.4.3", "dns")
    assert "delivery.relayhost" in a["text"]


def test_relayhost_host_port_looks_up_its_mx(scenario, sinks, mx_port):
    # "example.test:port": the MX records of example.test (mx1 first), as Postfix does
    sc = scenario(delivery={"relayhost": f"example.test:{mx_port}", "relayhost_tls": "none"})
    mid = sc.submit(["cy@other.test"])  # other.test's own MX would be mx3
    sc.wait(mid, delivered=1)
    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [["cy@other.test"]]
    assert sinks[2].h.messages == []


def test_bracketed_relayhost_skips_the_mx_lookup(scenario, sinks, mx_port):
    # "[mx3.example.test]:port": the host's own address, no MX lookup
    sc = scenario(delivery={"relayhost": f"[mx3.example.test]:{mx_port}",
                            "relayhost_tls": "none"})
    mid = sc.submit(["ann@example.test"])  # example.test's own MX would be mx1
    sc.wait(mid, delivered=1)
    assert [m["rcpt_tos"] for m in sinks[2].h.messages] == [["ann@example.test"]]
    assert sinks[0].h.messages == []


def test_routes_before_relayhost(scenario, smarthost, sinks, mx_port):
    box = smarthost("starttls")
    sc = scenario(delivery={**_relayhost(box, "starttls"),
                            "routes": {"other.test": f"[{MX_IPS[3]}]:{mx_port}",
                                       "Example.Test": f"[{MX_IPS[4]}]:{mx_port}"}})
    mid = sc.submit(["ann@example.test", "cy@other.test", "dee@third.invalid"])
    sc.wait(mid, delivered=3)
    assert [m["rcpt_tos"] for m in sinks[3].h.messages] == [["cy@other.test"]]
    assert [m["rcpt_tos"] for m in sinks[4].h.messages] == [["ann@example.test"]]
    assert [m["rcpt_tos"] for m in box.messages] == [["dee@third.invalid"]]
    assert sinks[4].h.messages[0]["tls"]  # a route uses opportunistic TLS, as for an MX


def test_an_idle_connection_is_reused_only_for_its_own_port(scenario, smarthost):
    box = smarthost("none")
    other = Sink(SMART_IP, 0, "other-port.test").start()  # same address, another port
    try:
        sc = scenario(delivery={**_relayhost(box, "none"),
                                "routes": {"other.test": f"[{SMART_IP}]:{other.port}"},
                                "idle_connection_seconds": 30.0})
        first = sc.submit(["ann@example.test"])
        sc.wait(first, delivered=1)  # leaves an idle connection to SMART_IP:box.port
        second = sc.submit(["cy@other.test"])
        sc.wait(second, delivered=1)
        third = sc.submit(["bob@example.test"])
        sc.wait(third, delivered=1)
    finally:
        other.stop()
    assert [m["rcpt_tos"] for m in other.h.messages] == [["cy@other.test"]]
    assert [m["rcpt_tos"] for m in box.messages] == [["ann@example.test"], ["bob@example.test"]]
    assert len(box.logins) == 1  # the third reused the first's authenticated session
