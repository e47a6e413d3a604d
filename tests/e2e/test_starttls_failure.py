"""STARTTLS that cannot succeed: a failed handshake is retried in plaintext on a new
connection for opportunistic domains (delivered, tls=0), and deferred with the TLS error for
required ones; a required domain whose host offers no STARTTLS is deferred as well."""

from __future__ import annotations

import ssl


def test_failed_handshakes(scenario, sinks, dns, ca, extra_sinks):
    weak = extra_sinks(20, "mx.weak.test", ca=ca, tls_max=ssl.TLSVersion.TLSv1)
    dns.add("mx.weak.test", "A", weak.host)
    dns.add("weak.test", "MX", "10 mx.weak.test.")
    dns.add("weak-strict.test", "MX", "10 mx.weak.test.")
    dns.add("plain-strict.test", "MX", "10 mx1.example.test.")  # mx1: no STARTTLS at all
    sc = scenario(delivery={"require_tls_domains": ["weak-strict.test", "plain-strict.test"]})
    mid = sc.submit(["a@weak.test", "b@weak-strict.test", "c@plain-strict.test"])
    sc.wait(mid, delivered=1, deferred=2)

    assert [(m["rcpt_tos"], m["tls"]) for m in weak.h.messages] == [(["a@weak.test"], False)]
    assert len(weak.h.connections) >= 3  # TLS try + plaintext retry, and the strict TLS try
    assert not sinks[0].h.messages
    rows = {a["address"]: a for a in sc.attempts(mid)}
    assert (rows["a@weak.test"]["outcome"], rows["a@weak.test"]["tls"]) == ("delivered", 0)
    strict = rows["b@weak-strict.test"]
    assert (strict["outcome"], strict["stage"], strict["status"], strict["category"]) == (
        "deferred", "starttls", "4.7.5", "tls")
    plain = rows["c@plain-strict.test"]
    assert (plain["outcome"], plain["status"], plain["category"]) == (
        "deferred", "4.7.4", "tls")
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 3, "delivery.delivered": 1,
                           "delivery.deferred": 2}
