"""Every rewrite between submission and the recipient keeps the client's other header fields
byte for byte (SPEC §14): template filling and control-header removal at DATA, tracking
(pixel, click links, List-Unsubscribe) and DKIM signing at delivery. The CVE-2024-6923
refolding injection reaches the recipient as the one harmless field it was sent as."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

import dkim

from tests.support.hostile import INJECTION, kept_fields, tricky_message
from tests.support.outbound import dkim_dnsfunc, publish_dkim

CONTROLS = (b'X-Helo-Template-Data: {"name": "Dora"}\r\n', b"X-Helo-Mail-Type: broadcast\r\n",
            b"X-Helo-Track-Opens: true\r\n", b"X-Helo-Track-Links: true\r\n",
            b"X-Helo-Broadcast: december\r\n")
REWRITTEN = frozenset({"subject"})
ADDED = frozenset({"received", "dkim-signature", "list-unsubscribe", "list-unsubscribe-post"})
REMOVED = frozenset({"x-helo-template-data", "x-helo-mail-type", "x-helo-track-opens",
                     "x-helo-track-links", "x-helo-broadcast"})


def test_headers_reach_the_recipient_byte_for_byte(scenario, sinks, dns, dns_server):
    sc = scenario()
    publish_dkim(dns, sc.relay.tenant)
    sent = tricky_message(*CONTROLS)
    mid = sc.submit(["dora@example.test"], raw=sent)
    sc.wait(mid, delivered=1)

    data = sinks[0].h.messages[0]["data"]
    assert kept_fields(data, REWRITTEN | ADDED) == kept_fields(sent, REWRITTEN | REMOVED)
    assert INJECTION in data
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert msg.get_all("From") == ['"Acme, Inc." <app@sender.test>']
    assert msg["Subject"] == "Hello Dora"
    plain, html = (p.get_content() for p in msg.iter_parts())
    assert plain.startswith("Hi Dora, see https://shop.example.test/a")  # untracked: text
    assert "https://shop.example.test/a" not in html and "/c/" in html and "/o/" in html
    assert "d=sender.test" in msg["DKIM-Signature"]
    assert dkim.verify(data, dnsfunc=dkim_dnsfunc(dns_server))
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 1,
                           "delivery.delivered": 1}
