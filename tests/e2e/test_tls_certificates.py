"""Certificates: opportunistic TLS takes any certificate (RFC 7435); a domain listed in
``require_tls_domains`` is delivered only to a host whose certificate verifies for its MX
name, and is deferred (category tls) otherwise."""

from __future__ import annotations

from tests.support.net import MX_IPS


def test_bad_certificate(scenario, sinks, dns, ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # mx3 presents a certificate for mx3.example.test, issued by the test CA
    dns.add("strict-ok.test", "MX", "10 mx3.example.test.")
    for d in ("strict-bad.test", "loose.test"):
        dns.add(d, "MX", f"10 wrongname.{d}.")
        dns.add(f"wrongname.{d}", "A", MX_IPS[2])
    sc = scenario(delivery={"require_tls_domains": ["strict-ok.test", "strict-bad.test"],
                            "tls_ca_file": str(ca_file)})
    mid = sc.submit(["a@strict-ok.test", "b@strict-bad.test", "c@loose.test"])
    sc.wait(mid, delivered=2, deferred=1)

    got = sorted((m["rcpt_tos"][0], m["tls"]) for m in sinks[2].h.messages)
    assert got == [("a@strict-ok.test", True), ("c@loose.test", True)]
    rows = {a["address"]: a for a in sc.attempts(mid)}
    bad = rows["b@strict-bad.test"]
    assert (bad["outcome"], bad["stage"], bad["status"], bad["category"]) == (
        "deferred", "starttls", "4.7.5", "tls")
    assert "certificate" in bad["text"].lower()
    assert rows["a@strict-ok.test"]["tls"] == 1 and rows["c@loose.test"]["tls"] == 1
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 3, "delivery.delivered": 2,
                           "delivery.deferred": 1}
