"""Control headers never reach the recipient, and the DKIM signature made over the final
headers verifies at the sink against the key published in (local) DNS."""

from __future__ import annotations

from email import message_from_bytes

import dkim

from tests.support.outbound import dkim_dnsfunc, publish_dkim

CONTROL = {
    "X-Helo-Tag": "welcome, onboarding",
    "X-Helo-Metadata-order": "A-17",
    "X-Helo-Track-Opens": "false",
    "X-PM-Tag": "legacy",
    "X-PM-Metadata-user": "42",
    "X-PM-TrackLinks": "None",
}


def test_control_headers_are_stripped_and_dkim_verifies(scenario, sinks, dns, dns_server):
    sc = scenario()
    publish_dkim(dns, sc.relay.tenant)
    mid = sc.submit(["dora@example.test"], subject="Your order", headers=CONTROL)
    sc.wait(mid, delivered=1)

    data = sinks[0].h.messages[0]["data"]
    msg = message_from_bytes(data)
    names = [k.lower() for k in msg]
    assert not [n for n in names if n.startswith(("x-helo-", "x-pm-"))], names
    assert b"x-helo-" not in data.lower() and b"x-pm-" not in data.lower()
    assert msg["Subject"] == "Your order" and msg["Message-ID"] and msg["Received"]

    sig = msg["DKIM-Signature"]
    assert "d=sender.test" in sig and "s=sel1" in sig and "c=relaxed/relaxed" in sig
    dnsfunc = dkim_dnsfunc(dns_server)
    assert dkim.verify(data, dnsfunc=dnsfunc)
    tampered = data.replace(b"Your order", b"Your 0rder")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)  # the check above means something

    assert sc.counts() == {"message.received": 1, "recipient.accepted": 1, "delivery.delivered": 1}
