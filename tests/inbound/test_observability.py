"""Metrics, the per-transaction log line, pipelining, and the hook boundary."""

from __future__ import annotations

import asyncio
import logging
import re
import types

from prometheus_client import REGISTRY

from helo_smtp.errors import CATALOG
from helo_smtp.inbound.handler import Handler
from helo_smtp.inbound.protocol import HeloEnvelope
from tests.inbound.clients import Raw, accepted, message, send, session
from tests.support.waiting import wait_for


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics(relay, client_ctx):
    t = relay.tenant
    before = {
        "accepted": sample("helo_messages_accepted_total", mail_type="transactional"),
        "rejected": sample("helo_messages_rejected_total", code="550",
                           reason="domain_unverified"),
        "auth": sample("helo_auth_failures_total", reason="invalid"),
        "conns": sample("helo_connections_active", direction="in"),
    }
    s = session(relay, client_ctx)
    assert sample("helo_connections_active", direction="in") == before["conns"] + 1
    accepted(send(s, t.sender, ["u@example.test"], message()))
    assert send(s, "app@nowhere.test", ["u@example.test"], message()) == \
        CATALOG["domain_unverified"].line()
    assert send(s, t.sender, ["u@example.test"], message(sender="x@nowhere.test")) == \
        CATALOG["domain_unverified"].line()
    s.quit()
    bad = Raw(relay.ports["submissions"], client_ctx)
    bad.reply()
    bad.cmd("EHLO client.test")
    bad.cmd("AUTH PLAIN AHgAeQ==")
    bad.close()
    assert sample("helo_messages_accepted_total", mail_type="transactional") == \
        before["accepted"] + 1
    assert sample("helo_messages_rejected_total", code="550", reason="domain_unverified") == \
        before["rejected"] + 2
    assert sample("helo_auth_failures_total", reason="invalid") == before["auth"] + 1
    wait_for(lambda: sample("helo_connections_active", direction="in") == before["conns"],
             what="the connection gauge to drop")


def test_one_log_line_per_transaction(relay, client_ctx, caplog):
    caplog.set_level(logging.INFO, logger="helo_smtp.smtp")
    t = relay.tenant
    s = session(relay, client_ctx)
    mid = accepted(send(s, t.sender, ["u@example.test", "v@example.test"], message()))
    send(s, t.sender, ["u@example.test"], message(sender="x@nowhere.test"))
    send(s, "app@nowhere.test", ["u@example.test"], message())
    s.rset()
    s.quit()
    lines = [r.getMessage() for r in caplog.records if "event=smtp_transaction" in r.getMessage()]
    assert len(lines) == 3, lines
    fields = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines]
    assert fields[0] | {"listener": "submission"} == {
        "event": "smtp_transaction", "message_id": mid, "channel": t.channel.id,
        "mail_type": "transactional", "client_ip": "127.0.0.1", "listener": "submission",
        "code": "250", "status": "2.0.0", "reason": "accepted", "recipients": "2"}
    assert (fields[1]["code"], fields[1]["reason"], fields[1]["message_id"]) == \
        ("550", "domain_unverified", "-")
    assert (fields[2]["code"], fields[2]["reason"], fields[2]["channel"]) == \
        ("550", "domain_unverified", "-")


def test_pipelined_commands_get_one_reply_each_in_order(relay, client_ctx):
    raw = Raw(relay.ports["submission"])
    raw.login(client_ctx, relay.tenant.username, relay.tenant.secret)
    raw.send(b"MAIL FROM:<app@sender.test>\r\nRCPT TO:<a@example.test>\r\n"
             b"RCPT TO:<>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    assert [raw.reply() for _ in range(4)] == [
        CATALOG["sender_ok"].line(), CATALOG["recipient_ok"].line(),
        CATALOG["bad_recipient"].line(), CATALOG["recipient_ok"].line()]
    assert raw.reply().startswith("354 ")
    accepted(raw.data(message()))
    raw.send(b"RSET\r\nNOOP\r\nQUIT\r\n")
    assert raw.replies_until_eof() == [CATALOG["ok"].line()] * 2 + [CATALOG["bye"].line()]


def test_channel_created_after_a_lookup_is_found_at_once(relay, client_ctx):
    store, t = relay.store, relay.tenant
    cred, secret = store.credentials.create(t.account.id, None, "account-wide")
    s = session(relay, client_ctx, username=cred.username, secret=secret)
    first = message(headers={"X-Helo-Channel-Id": t.channel.id})
    accepted(send(s, t.sender, ["u@example.test"], first))  # the account's channels are cached
    fresh = store.channels.create(t.account.id, "fresh")
    reply = send(s, t.sender, ["u@example.test"],
                 message(headers={"X-Helo-Channel-Id": fresh.id}))
    assert store.queue.load_message(accepted(reply)).channel_id == fresh.id


def test_any_exception_in_a_hook_becomes_451_with_a_correlation_id(caplog):
    caplog.set_level(logging.ERROR, logger="helo_smtp.smtp")
    handler = Handler(cfg=None, submission=None, directory=None, capacity=None, wake=print)
    server = types.SimpleNamespace(client_ip="192.0.2.1", listener_name="submission")

    async def boom() -> str:
        raise KeyError("secret internal detail")

    line = asyncio.run(handler._guard(server, HeloEnvelope(), "DATA", boom()))
    assert line == CATALOG["local_error"].line()
    [record] = [r for r in caplog.records if "event=internal_error" in r.getMessage()]
    assert re.search(r"correlation_id=[0-9a-f]{12} command=DATA client_ip=192\.0\.2\.1 "
                     r"error=KeyError", record.getMessage())
    assert "secret internal detail" not in line
