"""Postfix as a legacy server's MTA, relaying through helo-smtp as its smarthost: STARTTLS
required (``smtp_tls_security_level = encrypt``), SASL from a ``hash:`` map. The application
hands mail to Postfix; Postfix authenticates to the relay, gets the documented ``250 2.0.0 Ok:
queued as <id>``, and the mail reaches the destination's MX (the sink)."""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.clients import postfixclient
from tests.clients.conftest import arrived
from tests.clients.postfixclient import PostfixClient
from tests.support.figures import record
from tests.support.submit import build
from tests.support.waiting import wait_for

why_not = postfixclient.available()
pytestmark = pytest.mark.skipif(why_not is not None, reason=why_not or "")

MESSAGES = 3


def test_postfix_relays_through_helo_smtp_with_sasl_and_tls(client_relay, sinks):
    t = client_relay.tenant
    pf = PostfixClient(client_relay.ports["submission"], t.username, t.secret)
    try:
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as s:  # the legacy app
            for i in range(MESSAGES):
                s.sendmail(t.sender, [f"user{i}@example.test"],
                           build(t.sender, [f"user{i}@example.test"], subject=f"legacy {i}",
                                 headers={"X-Helo-Tag": "legacy"}))
        sent = wait_for(lambda: re.findall(
            r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+,.* status=sent \((250 2\.0\.0 Ok: queued "
            r"as ([0-9a-f-]{36}))\)", pf.log()) if pf.log().count("status=sent") >= MESSAGES
            else None, timeout=30, what="postfix to hand every message to the relay")
        log = pf.log()
    finally:
        pf.stop()
    assert len(sent) == MESSAGES, log
    assert re.search(r"Trusted TLS connection established|Untrusted TLS connection "
                     r"established|Anonymous TLS connection established", log), log
    assert "SASL authentication failed" not in log
    for _, mid in sent:
        got = arrived(sinks[0], mid)
        assert got["mail_from"] == t.sender
        assert b"X-Helo-Tag" not in got["data"] and b"legacy.test" in got["data"]
        assert client_relay.store.queue.load_message(mid).tags == ["legacy"]
    assert sorted(m["rcpt_tos"][0] for m in sinks[0].h.messages) == [
        f"user{i}@example.test" for i in range(MESSAGES)]
    record("client_postfix_smarthost", messages=MESSAGES, delivered=MESSAGES)
