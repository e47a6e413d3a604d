"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA. Each variant below hides a second transaction
after a fake end-of-data; the relay must answer once and store exactly one message, to the
real recipient, with the smuggled commands as plain content."""

from __future__ import annotations

import pytest

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw, accepted

FAKE_ENDS = [
    b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r", b"\r.\n",
    b"\r\n.\r\r\n", b"\r\r\n.\r\r\n", b"\r\n. \r\n", b"\r\n\x0b.\r\n",
]

SMUGGLED = (b"MAIL FROM:<app@sender.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"From: app@sender.test\r\nSubject: smuggled\r\n\r\nevil")


@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=[repr(v)[2:-1] for v in FAKE_ENDS])
def test_fake_end_of_data_does_not_start_a_transaction(shared_relay, client_ctx, fake_end):
    relay = shared_relay
    before = {m["id"] for m in relay.store.admin.messages(limit=1000)}
    raw = Raw(relay.ports["submission"])
    raw.login(client_ctx, relay.tenant.username, relay.tenant.secret)
    assert raw.cmd("MAIL FROM:<app@sender.test>") == CATALOG["sender_ok"].line()
    assert raw.cmd("RCPT TO:<user@example.test>") == CATALOG["recipient_ok"].line()
    assert raw.cmd("DATA").startswith("354 ")
    raw.send(b"From: app@sender.test\r\nSubject: real\r\n\r\nhello" + fake_end + SMUGGLED
             + b"\r\n.\r\nQUIT\r\n")
    replies = raw.replies_until_eof()
    assert len(replies) == 2 and replies[1] == CATALOG["bye"].line(), replies
    message_id = accepted(replies[0])
    after = {m["id"] for m in relay.store.admin.messages(limit=1000)}
    assert after - before == {message_id}  # exactly one message for this submission
    assert [r["address"] for r in relay.store.admin.recipients(message_id)] == \
        ["user@example.test"]
    raw_bytes = relay.store.queue.message_raw(message_id)
    assert b"RCPT TO:<victim@example.test>" in raw_bytes and b"evil" in raw_bytes
