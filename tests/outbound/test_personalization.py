"""Per-recipient copies (tracking.personalize) are made before DKIM signing, one transaction
each; a paced broadcast gives rows back to the queue instead of holding them."""

from __future__ import annotations

import re

import dkim

from helo_smtp.models import MailType
from tests.support.accounting import assert_accounting
from tests.support.outbound import (
    capture_log,
    dkim_dnsfunc,
    enqueue,
    publish_dkim,
    raw_message,
    wait_states,
)

HTML = ('<html><body><p>Hi</p><a href="https://shop.example/sale">Sale</a></body></html>')


def html_message(sender: str, rcpts: list[str]) -> bytes:
    head = raw_message(sender, rcpts).split(b"\r\n\r\n", 1)[0]
    head = head.replace(b"Content-Type: text/plain; charset=utf-8",
                        b"Content-Type: text/html; charset=utf-8")
    return head + b"\r\n\r\n" + HTML.encode() + b"\r\n"


def test_each_recipient_gets_its_own_signed_copy(rig_factory, sinks, dns, dns_server):
    rig = rig_factory()
    publish_dkim(dns, rig.tenant)
    rcpts = ["ann@other.test", "ben@other.test"]
    mid = enqueue(rig.store, rig.tenant, rcpts, MailType.BROADCAST, track_opens=True,
                  track_links=True, raw=html_message(rig.tenant.sender, rcpts))
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"delivered": 2})

    msgs = sinks[2].h.messages
    assert sorted(m["rcpt_tos"] for m in msgs) == [["ann@other.test"], ["ben@other.test"]]
    unsub = set()
    for m in msgs:
        data = m["data"]
        assert dkim.verify(data, dnsfunc=dkim_dnsfunc(dns_server))  # signed after rewriting
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in data
        assert b"https://shop.example/sale" not in data  # the link goes through the relay
        assert b"/o/" in data  # the open pixel
        unsub.add(re.search(rb"List-Unsubscribe: <([^>]+)>", data).group(1))
    assert len(unsub) == 2  # one token per recipient
    assert_accounting(rig.store)


def test_a_paced_broadcast_releases_rows_instead_of_holding_them(rig_factory, sinks):
    rig = rig_factory(pools={"broadcast": {"per_domain_rate": 4.0}})
    with capture_log("helo_smtp.delivery") as log:
        ids = [enqueue(rig.store, rig.tenant, [f"fan{i}@other.test"], MailType.BROADCAST)
               for i in range(8)]
        rig.workers.wake()
        for mid in ids:
            wait_states(rig.store, mid, lambda c: c == {"delivered": 1})
    assert {r["attempts"] for mid in ids for r in rig.store.admin.recipients(mid)} == {1}
    held = log.kv("held_back")
    # a burst of 4 (the bucket's capacity) went at once; the rest were given back to the
    # queue, due when tokens are there again, and came back as often as needed
    assert held and all(h["domain"] == "other.test" and h["mail_type"] == "broadcast"
                        for h in held)
    assert rig.store.events.counts() == {"message.received": 8,
                                         "recipient.accepted": 8, "delivery.delivered": 8}
    assert_accounting(rig.store)
