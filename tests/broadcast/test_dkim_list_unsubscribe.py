"""The RFC 8058 headers are added before DKIM signing: the signature at the sink covers
List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 §4), verifies against the key in (local)
DNS, and breaks if either header is altered."""

from __future__ import annotations

import email

import dkim

from tests.support.outbound import dkim_dnsfunc, publish_dkim, wait_states
from tests.support.submit import submit

ANN = "ann@example.test"


def test_dkim_signature_covers_the_unsubscribe_headers(broadcast_relay, sinks, dns, dns_server,
                                                       client_ctx):
    relay = broadcast_relay(http={"unsubscribe_mailto": "unsub@relay.test"})
    publish_dkim(dns, relay.tenant)
    mid = submit(relay, client_ctx, [ANN], subject="Weekly", listener="broadcast",
                 html="<html><body><p>Weekly news</p></body></html>")
    wait_states(relay.store, mid, lambda c: c == {"delivered": 1})
    (data,) = [m["data"] for s in sinks for m in s.h.messages]
    msg = email.message_from_bytes(data)

    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (v.strip(" \r\n\t<>") for v in msg["List-Unsubscribe"].split(","))
    assert https.startswith(relay.cfg.http.public_url + "/u/")
    assert mailto.startswith("mailto:unsub@relay.test?subject=unsubscribe%20")

    sig = msg["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in "".join(sig.split()).split(";") if t.strip())
    signed = [h.lower() for h in tags["h"].split(":")]
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    dnsfunc = dkim_dnsfunc(dns_server)
    assert dkim.verify(data, dnsfunc=dnsfunc)
    token = https.rsplit("/", 1)[1]
    other_url = data.replace(token.encode(), token[::-1].encode(), 1)
    assert not dkim.verify(other_url, dnsfunc=dnsfunc)
    no_one_click = data.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Click")
    assert not dkim.verify(no_one_click, dnsfunc=dnsfunc)
