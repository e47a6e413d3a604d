"""SPEC §6: X-Helo-Idempotency-Key, scoped to the account, one hour, replay or conflict."""

from __future__ import annotations

import threading
import time

from helo_smtp.errors import CATALOG
from helo_smtp.inbound import headers
from helo_smtp.models import MailType, NewMessage, uuid7
from tests.inbound.clients import accepted, message, messages, other_tenant, send, session

KEY = {"X-Helo-Idempotency-Key": "order-1234-confirmation"}


def keyed(extra: dict[str, str] | None = None, body: str = "Your order shipped.\n",
          sender: str = "app@sender.test") -> bytes:
    return message(sender=sender, body=body, headers={**KEY, **(extra or {})})


def test_replay_returns_the_original_reply_and_queues_nothing(relay, client_ctx):
    s = session(relay, client_ctx)
    t = relay.tenant
    first = send(s, t.sender, ["a@example.test", "b@example.test"],
                 keyed({"Date": "Mon, 1 Jan 2024 00:00:00 +0000", "Message-ID": "<1@app>"}))
    accepted(first)
    # A retry regenerates Date and Message-ID and lists the recipients in another order.
    again = send(s, t.sender, ["b@example.test", "a@example.test"],
                 keyed({"Date": "Mon, 1 Jan 2024 00:05:00 +0000", "Message-ID": "<2@app>"}))
    assert again == first
    assert len(messages(relay.store)) == 1
    assert relay.store.queue.pending_count() == 2
    assert relay.store.events.counts()["message.received"] == 1


def test_same_key_other_content_conflicts(relay, client_ctx):
    s = session(relay, client_ctx)
    t = relay.tenant
    accepted(send(s, t.sender, ["a@example.test"], keyed()))
    assert send(s, t.sender, ["a@example.test"], keyed(body="Something else.\n")) == \
        CATALOG["idempotency_conflict"].line()
    assert send(s, t.sender, ["other@example.test"], keyed()) == \
        CATALOG["idempotency_conflict"].line()
    assert len(messages(relay.store)) == 1


def test_rejected_messages_are_not_remembered(relay, client_ctx):
    s = session(relay, client_ctx)
    t = relay.tenant
    bad = keyed(sender="someone@nowhere.test")
    assert send(s, t.sender, ["a@example.test"], bad) == CATALOG["domain_unverified"].line()
    accepted(send(s, t.sender, ["a@example.test"], keyed()))


def test_keys_are_scoped_to_the_account(relay, client_ctx):
    beta = other_tenant(relay.store, "beta", "beta.test")
    s = session(relay, client_ctx)
    first = send(s, relay.tenant.sender, ["a@example.test"], keyed())
    s2 = session(relay, client_ctx, username=beta.username, secret=beta.secret)
    second = send(s2, beta.sender, ["a@example.test"], keyed(sender=beta.sender))
    assert accepted(first) != accepted(second)


def test_a_key_older_than_an_hour_is_free_again(relay, client_ctx):
    t = relay.tenant
    old = NewMessage(id=uuid7(), account_id=t.account.id, channel_id=t.channel.id,
                     mail_type=MailType.TRANSACTIONAL, sender=t.sender,
                     recipients=["a@example.test"], suppressed=[], raw=b"Subject: old\r\n\r\n",
                     idempotency_key=KEY["X-Helo-Idempotency-Key"], fingerprint="other",
                     reply="250 2.0.0 Ok: queued as old", created_at=time.time() - 3601)
    relay.run(relay.store.queue.enqueue(old))
    s = session(relay, client_ctx)
    assert accepted(send(s, t.sender, ["a@example.test"], keyed())) != old.id


def test_concurrent_submissions_with_one_key_make_one_message(relay, client_ctx):
    t = relay.tenant
    clients = [session(relay, client_ctx) for _ in range(2)]
    for s in clients:
        assert s.mail(t.sender)[0] == 250 and s.rcpt("a@example.test")[0] == 250
        assert s.docmd("DATA")[0] == 354
    body = keyed()
    content = body + b".\r\n"
    gate = threading.Barrier(2)
    replies: list[str] = []

    def finish(s):
        gate.wait()
        s.send(content)
        code, text = s.getreply()
        replies.append(f"{code} {text.decode()}")

    threads = [threading.Thread(target=finish, args=(s,)) for s in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert len(replies) == 2 and replies[0] == replies[1], replies
    accepted(replies[0])
    assert len(messages(relay.store)) == 1
    assert relay.store.queue.pending_count() == 1


def test_fingerprint_ignores_regenerated_headers_only():
    base = b"Date: a\r\nMessage-ID: <1@x>\r\nReceived: from x\r\nX-Helo-Idempotency-Key: k\r\n" \
           b"Subject: s\r\n\r\nbody\r\n"
    retry = b"Date: b\r\nMessage-ID: <2@x>\r\nSubject: s\r\n\r\nbody\r\n"
    fp = headers.fingerprint("s@x.test", ["b@x.test", "a@x.test"], base)
    assert fp == headers.fingerprint("s@x.test", ["a@x.test", "b@x.test"], retry)
    assert fp != headers.fingerprint("s@x.test", ["a@x.test"], retry)
    assert fp != headers.fingerprint("t@x.test", ["a@x.test", "b@x.test"], retry)
    assert fp != headers.fingerprint("s@x.test", ["a@x.test", "b@x.test"],
                                     retry.replace(b"body", b"bodY"))
