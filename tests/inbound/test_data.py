"""DATA: control headers, channel and mail type, limits, templates, suppressions, content."""

from __future__ import annotations

import email
import email.policy

import pytest

from helo_smtp.errors import CATALOG, accepted_line
from helo_smtp.inbound.controls import DETAILS
from helo_smtp.models import SuppressionReason
from tests.inbound.clients import (
    Raw,
    accepted,
    message,
    other_tenant,
    recipients,
    send,
    session,
)


def c(name: str, detail: str = "") -> str:
    return CATALOG[name].line(detail)


def submit(relay, ctx, listener="submission", rcpts=("user@example.test",), body=None,
           **kw) -> str:
    s = session(relay, ctx, listener, **kw)
    try:
        return send(s, relay.tenant.sender, list(rcpts), body if body is not None else message())
    finally:
        s.close()


def stored(relay, reply: str):
    msg = relay.store.queue.load_message(accepted(reply))
    assert msg is not None
    return msg


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_control_headers_are_read_stored_and_stripped(relay, client_ctx):
    body = message(headers=[
        ("X-Helo-Tag", "welcome, onboarding"), ("X-PM-Tag", "pm"),
        ("X-Helo-Metadata-order-id", "42"), ("x-pm-metadata-user", "u1"),
        ("X-Helo-Track-Opens", "TRUE"), ("X-PM-TrackLinks", "HtmlOnly"),
        ("X-Helo-Something-New", "dropped"), ("X-PM-Message-Stream", "outbound"),
        ("X-Mailer", "app 1.0")])
    msg = stored(relay, submit(relay, client_ctx, body=body))
    assert msg.tags == ["welcome", "onboarding", "pm"]
    assert msg.metadata == {"order-id": "42", "user": "u1"}
    assert (msg.track_opens, msg.track_links) == (True, True)
    headers = parsed(msg.raw)
    assert not [k for k in headers if k.lower().startswith(("x-helo-", "x-pm-"))]
    assert headers["X-Mailer"] == "app 1.0"
    assert next(iter(headers.keys())) == "Received"
    assert headers["Message-ID"] == f"<{msg.id}@relay.test>"


def test_tracking_defaults_come_from_the_channel(relay, client_ctx):
    relay.store.channels.update(relay.tenant.channel.id, track_opens=True, track_links=True)
    assert (lambda m: (m.track_opens, m.track_links))(
        stored(relay, submit(relay, client_ctx))) == (True, True)
    off = message(headers={"X-Helo-Track-Opens": "false", "X-PM-TrackLinks": "None"})
    m = stored(relay, submit(relay, client_ctx, body=off))
    assert (m.track_opens, m.track_links) == (False, False)


def test_received_and_message_id(relay, client_ctx):
    body = message(headers={"Message-ID": "<kept@app.example>"})
    msg = stored(relay, submit(relay, client_ctx, body=body))
    h = parsed(msg.raw)
    assert h["Message-ID"] == "<kept@app.example>"
    received = h["Received"]
    assert received.startswith("from client.test ([127.0.0.1])")
    assert f"by relay.test (helo-smtp) with ESMTPSA id {msg.id}" in " ".join(received.split())
    assert relay.tenant.username not in received and "user@example.test" not in received
    assert len(h.get_all("Received")) == 1


def test_channel_resolution(relay, client_ctx):
    store, t = relay.store, relay.tenant
    second = store.channels.create(t.account.id, "second")
    beta = other_tenant(store, "beta", "beta.test")
    account_cred, secret = store.credentials.create(t.account.id, None, "account-wide")
    named = {"X-Helo-Channel-Id": second.id}
    assert submit(relay, client_ctx, body=message(headers=named)) == c("channel_not_found")
    same = message(headers={"X-Helo-Channel-Id": t.channel.id.upper()})
    assert stored(relay, submit(relay, client_ctx, body=same)).channel_id == t.channel.id

    as_account = {"username": account_cred.username, "secret": secret}
    assert submit(relay, client_ctx, **as_account) == c("channel_not_found")
    m = stored(relay, submit(relay, client_ctx, body=message(headers=named), **as_account))
    assert m.channel_id == second.id
    foreign = message(headers={"X-Helo-Channel-Id": beta.channel.id})
    assert submit(relay, client_ctx, body=foreign, **as_account) == c("channel_not_found")
    junk = message(headers={"X-Helo-Channel-Id": "not-a-uuid"})
    assert submit(relay, client_ctx, body=junk, **as_account) == \
        c("validation_error", DETAILS["channel"])
    third = store.channels.create(t.account.id, "third")
    store.channels.delete(third.id)
    gone = message(headers={"X-Helo-Channel-Id": third.id})
    assert submit(relay, client_ctx, body=gone, **as_account) == c("channel_not_found")


def test_mail_type_from_listener_or_header(relay, client_ctx):
    def mail_type(listener, headers=None):
        reply = submit(relay, client_ctx, listener, body=message(headers=headers))
        return stored(relay, reply).mail_type if reply.startswith("250") else reply

    assert mail_type("submission") == "transactional"
    assert mail_type("submissions", {"X-Helo-Mail-Type": "broadcast"}) == "broadcast"
    assert mail_type("broadcast") == "broadcast"
    assert mail_type("broadcast", {"X-Helo-Mail-Type": "Broadcast"}) == "broadcast"
    assert mail_type("broadcast", {"X-Helo-Mail-Type": "transactional"}) == \
        c("mail_type_conflict")
    assert mail_type("submission", {"X-Helo-Mail-Type": "newsletter"}) == \
        c("validation_error", DETAILS["mail_type"])


def test_broadcast_grouping(relay, client_ctx):
    named = message(subject="Spring sale", headers={"X-Helo-Broadcast": "spring-2025"})
    by_subject = message(subject="Weekly digest")
    ids = [stored(relay, submit(relay, client_ctx, "broadcast", body=b)).broadcast_id
           for b in (named, named, by_subject, by_subject)]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    rows = {b["id"]: b for b in relay.store.broadcasts.list(relay.tenant.channel.id)}
    assert rows[ids[0]]["name"] == "spring-2025"
    assert rows[ids[0]]["key"] == "name:spring-2025"
    assert rows[ids[2]]["key"].startswith("subject:") and \
        rows[ids[2]]["key"].endswith(":Weekly digest")
    assert "Weekly digest" in rows[ids[2]]["name"]
    assert rows[ids[0]]["accepted"] == 2


def test_from_header_domain_must_be_verified(relay, client_ctx):
    other_tenant(relay.store, "beta", "beta.test")
    for sender in ("someone@nowhere.test", "app@beta.test"):
        assert submit(relay, client_ctx, body=message(sender=sender)) == c("domain_unverified")
    no_from = b"To: user@example.test\r\nSubject: x\r\n\r\nbody\r\n"
    assert submit(relay, client_ctx, body=no_from) == c("validation_error", DETAILS["from"])


def _long(n: int) -> str:
    return "x" * n


LIMITS = [
    ({"Subject": _long(257)}, "subject"),
    ({"X-Helo-Tag": "a,b,c,d,e,f"}, "tags"),
    ({"X-PM-Tag": _long(101)}, "tag"),
    ([(f"X-Helo-Metadata-k{i}", "v") for i in range(11)], "fields"),
    ({"X-Helo-Metadata-" + _long(51): "v"}, "key"),
    ({"X-PM-Metadata-k": _long(101)}, "value"),
    ([(f"X-Custom-{i}", _long(489)) for i in range(10)], "custom"),  # 10 x 501 characters
    ({"X-Helo-Idempotency-Key": _long(37)}, "idempotency"),
    ({"X-Helo-Broadcast": _long(101)}, "broadcast"),
    ([("X-Helo-Mail-Type", "broadcast"), ("X-Helo-Mail-Type", "broadcast")], "duplicate"),
    ({"X-Helo-Track-Opens": "maybe"}, "boolean"),
]


@pytest.mark.parametrize("headers,detail", LIMITS, ids=[d for _, d in LIMITS])
def test_helo_limits(shared_relay, client_ctx, headers, detail):
    relay = shared_relay
    subject = headers.pop("Subject") if isinstance(headers, dict) and "Subject" in headers \
        else "Hello"
    assert submit(relay, client_ctx, body=message(subject=subject, headers=headers)) == \
        c("validation_error", DETAILS[detail])


def test_limits_are_inclusive(relay, client_ctx):
    headers = [("X-Helo-Tag", ",".join(f"t{i}" + "x" * 97 for i in range(5))),
               *[(f"X-Helo-Metadata-{'k' * 49}{i}", "v" * 100) for i in range(10)],
               *[(f"X-Custom-{i}", "y" * 488) for i in range(10)],  # 10 x 500 characters
               ("X-Helo-Idempotency-Key", "k" * 36),
               ("X-Helo-Broadcast", "b" * 100)]
    msg = stored(relay, submit(relay, client_ctx, body=message(subject="s" * 256,
                                                               headers=headers)))
    assert len(msg.tags) == 5 and len(msg.metadata) == 10


def test_templates(relay, client_ctx):
    m = email.message.EmailMessage()
    m["From"], m["To"] = relay.tenant.sender, "jane@example.test"
    m["Subject"] = "Hi {{ firstName }}, order {{order.id}}"
    m["X-Helo-Template-Data"] = '{"firstName": "Jane <3", "order": {"id": 1234}}'
    m.set_content("Hello {{firstName}}, #{{order.id}} ships.\n")
    m.add_alternative("<p>Hello {{firstName}}, {{{firstName}}}</p>\n", subtype="html")
    msg = stored(relay, submit(relay, client_ctx, body=m.as_bytes()))
    h = parsed(msg.raw)
    assert h["Subject"] == "Hi Jane <3, order 1234"
    text, html = (p.get_content().replace("\r\n", "\n") for p in h.iter_parts())
    assert text == "Hello Jane <3, #1234 ships.\n"
    assert html == "<p>Hello Jane &lt;3, Jane <3</p>\n"
    assert b"\r\r" not in msg.raw and b"\n" not in msg.raw.replace(b"\r\n", b"")
    assert "X-Helo-Template-Data" not in h


@pytest.mark.parametrize("subject,data", [
    ("Hi {{missing}}", "{}"),
    ("Hi {{name", '{"name": "x"}'),
    ("Hi {{name}}", "not json"),
    ("Hi {{name}}", "[1, 2]"),
    ("Hi {{name}}", '{"name": {"nested": true}}'),
])
def test_template_errors(shared_relay, client_ctx, subject, data):
    relay = shared_relay
    body = message(subject=subject, headers={"X-Helo-Template-Data": data})
    assert submit(relay, client_ctx, body=body) == c("templating_error")


def test_without_template_data_braces_are_left_alone(relay, client_ctx):
    msg = stored(relay, submit(relay, client_ctx, body=message(subject="{{as is}}")))
    assert parsed(msg.raw)["Subject"] == "{{as is}}"


def test_suppressions(relay, client_ctx):
    store, t = relay.store, relay.tenant
    store.suppressions.add(t.channel.id, ["gone@example.test", "Bounced@Example.test"],
                           SuppressionReason.HARD_BOUNCE)
    reply = submit(relay, client_ctx,
                   rcpts=["gone@example.test", "ok@example.test", "bounced@example.test"])
    mid = accepted(reply)
    assert reply == accepted_line(mid, ["gone@example.test", "bounced@example.test"])
    states = {r["address"]: r["state"] for r in store.admin.recipients(mid)}
    assert states == {"gone@example.test": "suppressed", "ok@example.test": "queued",
                      "bounced@example.test": "suppressed"}
    assert submit(relay, client_ctx, rcpts=["gone@example.test"]) == \
        c("recipients_suppressed")


def test_long_suppressed_list_is_cut(relay, client_ctx):
    store, t = relay.store, relay.tenant
    many = [f"suppressed-address-{i:02d}@example.test" for i in range(40)]
    store.suppressions.add(t.channel.id, many)
    reply = submit(relay, client_ctx, rcpts=[*many, "ok@example.test"])
    assert reply.endswith(", ...") and "\n" not in reply
    assert len(reply.split("; suppressed: ")[1]) <= 405
    assert recipients(store, accepted(reply)).count("ok@example.test") == 1


def _raw_session(relay, ctx) -> Raw:
    raw = Raw(relay.ports["submission"])
    raw.login(ctx, relay.tenant.username, relay.tenant.secret)
    return raw


def _transaction(raw: Raw, relay, content: bytes) -> str:
    assert raw.cmd(f"MAIL FROM:<{relay.tenant.sender}>") == c("sender_ok")
    assert raw.cmd("RCPT TO:<user@example.test>") == c("recipient_ok")
    assert raw.cmd("DATA").startswith("354")
    raw.send(content + b"\r\n.\r\n")
    return raw.reply()


def test_nul_and_line_ends(relay, client_ctx):
    raw = _raw_session(relay, client_ctx)
    head = f"From: {relay.tenant.sender}\r\nSubject: x\r\n\r\n".encode()
    assert _transaction(raw, relay, head + b"a\x00b") == c("nul_characters")
    reply = _transaction(raw, relay, f"From: {relay.tenant.sender}\nSubject: lf\n\n".encode()
                         + b"one\rtwo\nthree\r\r\nfour")
    body = stored(relay, reply).raw.split(b"\r\n\r\n", 1)[1]
    assert body == b"one\r\ntwo\r\nthree\r\n\r\nfour\r\n"
    assert b"\r" not in stored(relay, reply).raw.replace(b"\r\n", b"")


def test_too_large_refused_long_lines_folded_then_next_message_passes(make_relay, client_ctx):
    relay = make_relay(limits={"max_message_size": 4000})
    raw = _raw_session(relay, client_ctx)
    head = f"From: {relay.tenant.sender}\r\nSubject: x\r\n\r\n".encode()
    assert _transaction(raw, relay, head + b"y" * 990 + (b"\r\n" + b"z" * 990) * 4) == \
        c("message_too_large")
    folded = stored(relay, _transaction(raw, relay, head + b"w" * 1200)).raw  # not refused
    assert folded.endswith(b"\r\n\r\n" + b"w" * 997 + b"\r\n " + b"w" * 203 + b"\r\n")
    # RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF is the limit, not 1001
    kept = stored(relay, _transaction(raw, relay, head + b"k" * 998)).raw
    assert kept.endswith(b"\r\n\r\n" + b"k" * 998 + b"\r\n")
    over = stored(relay, _transaction(raw, relay, head + b"o" * 999)).raw
    assert over.endswith(b"\r\n\r\n" + b"o" * 997 + b"\r\n oo\r\n")
    accepted(_transaction(raw, relay, head + b"fine"))
