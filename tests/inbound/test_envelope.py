"""EHLO, MAIL and RCPT: account and domain rules, pending accounts, address syntax, guards."""

from __future__ import annotations

import pytest
from aiosmtplib.email import quote_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helo_smtp import keys
from helo_smtp.errors import CATALOG
from helo_smtp.models import AccountStatus, MailType, NewMessage, uuid7
from tests.inbound.clients import (
    Raw,
    accepted,
    message,
    messages,
    other_tenant,
    recipients,
    send,
    session,
)


def logged_in(relay, ctx) -> Raw:
    raw = Raw(relay.ports["submission"])
    raw.login(ctx, relay.tenant.username, relay.tenant.secret)
    return raw


def c(name: str) -> str:
    return CATALOG[name].line()


def test_account_status_and_sender_domain_at_mail(relay, client_ctx):
    store, t = relay.store, relay.tenant
    beta = other_tenant(store, "beta", "beta.test")
    acc = store.accounts.get(t.account.id)
    private_pem, public_b64 = keys.generate_dkim_key(1024)
    store.domains.add(acc.id, "pending.test", keys.new_verify_token(), "s1", private_pem,
                      public_b64)
    raw = logged_in(relay, client_ctx)
    assert raw.cmd("MAIL FROM:<app@nowhere.test>") == c("domain_unverified")
    assert raw.cmd("MAIL FROM:<app@pending.test>") == c("domain_unverified")  # not verified
    assert raw.cmd(f"MAIL FROM:<{beta.sender}>") == c("domain_unverified")  # someone else's
    assert raw.cmd("MAIL FROM:<App@SENDER.test>") == c("sender_ok")
    assert raw.cmd("RSET") == c("ok")
    store.accounts.set_status(t.account.id, AccountStatus.FORBIDDEN)
    assert raw.cmd(f"MAIL FROM:<{t.sender}>") == c("account_forbidden")


def test_pending_account_rules(relay, client_ctx):
    store, t = relay.store, relay.tenant
    store.accounts.set_status(t.account.id, AccountStatus.PENDING)
    raw = logged_in(relay, client_ctx)
    assert raw.cmd(f"MAIL FROM:<{t.sender}>") == c("sender_ok")
    assert raw.cmd("RCPT TO:<user@example.test>") == c("recipient_forbidden")
    assert raw.cmd("RCPT TO:<colleague@sender.test>") == c("recipient_ok")
    raw.cmd("RSET")
    used = NewMessage(id=uuid7(), account_id=t.account.id, channel_id=t.channel.id,
                      mail_type=MailType.TRANSACTIONAL, sender=t.sender,
                      recipients=[f"u{i}@sender.test" for i in range(998)], suppressed=[],
                      raw=message())
    relay.run(store.queue.enqueue(used))  # 998 of the 1,000 free sends are used
    other = logged_in(relay, client_ctx)
    for session_ in (raw, other):  # both pass RCPT with one send left each ...
        assert session_.cmd(f"MAIL FROM:<{t.sender}>") == c("sender_ok")
        assert session_.cmd("RCPT TO:<a@sender.test>") == c("recipient_ok")
    assert raw.cmd("RCPT TO:<b@sender.test>") == c("recipient_ok")
    assert raw.cmd("RCPT TO:<c@sender.test>") == c("send_limit_exceeded")
    assert raw.cmd("DATA").startswith("354")
    accepted(raw.data(message(sender=t.sender)))
    assert other.cmd("DATA").startswith("354")  # ... but the commit counts again
    assert other.data(message(sender=t.sender)) == c("send_limit_exceeded")


def test_recipient_51_is_deferred(relay, client_ctx):
    s = session(relay, client_ctx)
    s.mail(relay.tenant.sender)
    codes = [s.rcpt(f"u{i}@example.test") for i in range(52)]
    assert [code for code, _ in codes[:50]] == [250] * 50
    assert [f"{code} {text.decode()}" for code, text in codes[50:]] == \
        [c("too_many_recipients")] * 2
    code, text = s.data(message())
    mid = accepted(f"{code} {text.decode()}")
    assert len(recipients(relay.store, mid)) == 50


@pytest.mark.parametrize("command,expected", [
    ("RCPT TO:<>", "bad_recipient"),
    ("RCPT TO:<a\x01b@example.test>", "bad_recipient"),
    ("RCPT TO:<a\x00b@example.test>", "bad_recipient"),
    ("RCPT TO:<a\rRCPT TO:<b@example.test>", "bad_recipient"),
    ("RCPT TO:<a b@example.test>", "bad_recipient"),
    ("RCPT TO:<" + "a" * 65 + "@example.test>", "bad_recipient"),
    ("RCPT TO:<" + "a" * 64 + "@" + ".".join(c * 60 for c in "defg") + ".test>",
     "bad_recipient"),
    ("RCPT TO:<user@bad_domain.test>", "bad_recipient"),
    ("RCPT TO:<user@localhost>", "bad_recipient"),
    ("RCPT TO:<user@[127.0.0.1]>", "bad_recipient"),
    ("RCPT TO:<user@-bad.test>", "bad_recipient"),
    ("RCPT TO:<us..er@example.test>", "bad_recipient"),
    ('RCPT TO:<"quoted"@example.test>', "recipient_ok"),  # RFC 5321 §4.1.2
    ('RCPT TO:<"john doe"@example.test> NOTIFY=NEVER', "unknown_parameter"),
    ('RCPT TO:<"a>b"@example.test>', "recipient_ok"),
    ('RCPT TO:<"a"b"@example.test>', "bad_recipient"),
    ('RCPT TO:<"jörg"@example.test>', "smtputf8_required"),
    ("RCPT TO:<user@example.test", "bad_recipient"),
    ("RCPT TO:<user(comment)@example.test>", "bad_recipient"),
    ("RCPT TO:<üser@example.test>", "smtputf8_required"),
    ("RCPT TO:<user@exämple.test>", "smtputf8_required"),
    ("RCPT TO:<user@example.test> FOO=bar", "unknown_parameter"),
    ("RCPT TO:<@relay.example:user@example.test>", "recipient_ok"),  # route dropped
    ("RCPT TO:user@example.test", "recipient_ok"),
])
def test_recipient_syntax(shared_relay, client_ctx, command, expected):
    relay = shared_relay
    raw = logged_in(relay, client_ctx)
    assert raw.cmd(f"MAIL FROM:<{relay.tenant.sender}>") == c("sender_ok")
    assert raw.cmd(command.encode()) == c(expected)
    assert raw.cmd("NOOP") == c("ok")  # exactly one reply, session intact


def test_sender_syntax_parameters_and_order(relay, client_ctx):
    raw = logged_in(relay, client_ctx)
    cases = [
        ("RCPT TO:<user@example.test>", "bad_sequence"),
        ("DATA", "no_valid_recipients"),
        ("MAIL FROM:<>", "bad_sender"),
        ("MAIL FROM:<a\x7f@sender.test>", "bad_sender"),
        ("MAIL FROM:<app@sender.test", "bad_sender"),
        ("MAIL FROM:<appé@sender.test>", "smtputf8_required"),
        ("MAIL FROM:<app@sender.test> SIZE=26214401", "message_too_large"),
        ("MAIL FROM:<app@sender.test> BODY=BINARYMIME", "bad_syntax"),
        ("MAIL FROM:<app@sender.test> XFOO", "unknown_parameter"),
        ("MAIL FROM:<appé@sender.test> SMTPUTF8 SIZE=100", "sender_ok"),
        ("MAIL FROM:<app@sender.test>", "bad_sequence"),
    ]
    got = [(cmd, raw.cmd(cmd.encode())) for cmd, _ in cases]
    assert got == [(cmd, c(name)) for cmd, name in cases]


def test_ehlo_and_other_commands(relay):
    raw = Raw(relay.ports["submission"])
    raw.reply()
    cases = [
        ("EHLO", "bad_helo"),
        ("EHLO bad host", "bad_helo"),
        ("EHLO bad\x00host", "bad_helo"),
        ("EHLO [1.2.3.999]", "bad_helo"),
        ("EHLO host\rname", "bad_helo"),
        ("HELO", "bad_helo"),
        ("MAIL FROM:<app@sender.test>", "bad_sequence"),  # no valid EHLO yet
        ("FOO bar", "unknown_command"),
        ("VRFY user@example.test", "vrfy_disabled"),
        ("EXPN list", "not_implemented"),
        ("HELP", "not_implemented"),
        ("NOOP " + "x" * 600, "line_too_long"),
    ]
    got = [(cmd, raw.cmd(cmd.encode())) for cmd, _ in cases]
    assert got == [(cmd, c(name)) for cmd, name in cases]
    for good in ("EHLO [IPv6:::1]", "EHLO [192.0.2.1]", "EHLO DESKTOP_1.corp.example",
                 "HELO app-server"):
        assert raw.cmd(good).startswith("250"), good
    assert raw.cmd("MAIL FROM:<app@sender.test>") == c("auth_required")
    assert raw.cmd("QUIT") == c("bye")


def test_smtputf8_addresses_round_trip(relay, client_ctx):
    s = session(relay, client_ctx)
    reply = send(s, relay.tenant.sender, ["üser@exämple.test", "ascii@example.test"],
                 message(to="ascii@example.test"), mail_options=("SMTPUTF8",))
    assert sorted(recipients(relay.store, accepted(reply))) == \
        ["ascii@example.test", "üser@exämple.test"]


@pytest.mark.sqlite_only  # SQLite internals (writer connection, page limits, statvfs of the file)
def test_free_space_guard(make_relay, client_ctx):
    relay = make_relay(server={"free_space_margin_mb": 10**12})
    s = session(relay, client_ctx)
    assert send(s, relay.tenant.sender, ["u@example.test"], message()) == \
        c("insufficient_storage")


def test_queue_high_water(make_relay, client_ctx):
    relay = make_relay(server={"queue_high_water": 1})
    s = session(relay, client_ctx)
    accepted(send(s, relay.tenant.sender, ["a@example.test", "b@example.test"], message()))
    assert send(s, relay.tenant.sender, ["c@example.test"], message()) == c("queue_full")
    assert len(messages(relay.store)) == 1


_LOCAL = st.text(alphabet=st.sampled_from(
    list("abcXYZ09.!#$%&'*+/=?^_`{|}~-\"(),:;<>@[\\] \t\x00\x01\x7fé")), min_size=1,
    max_size=12)
_DOMAIN = st.sampled_from(["example.test", "EXAMPLE.test", "ex-ample.test", "exämple.test",
                           "[127.0.0.1]", "localhost", "a..test", "-x.test", "x.123"])


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(addresses=st.lists(st.builds("{}@{}".format, _LOCAL, _DOMAIN), min_size=1, max_size=30))
def test_every_accepted_address_round_trips_through_quote_address(relay, client_ctx,
                                                                   addresses):
    raw = _session(relay, client_ctx)
    assert raw.cmd(f"MAIL FROM:<{relay.tenant.sender}> SMTPUTF8") == c("sender_ok")
    sent: dict[str, str] = {}
    for address in addresses:
        reply = raw.cmd(f"RCPT TO:<{address}>".encode())
        if reply == c("recipient_ok"):
            assert quote_address(address) == f"<{address}>"
            local, _, domain = address.rpartition("@")
            sent.setdefault(f"{local}@{domain.lower()}", address)  # a duplicate counts once
        else:
            assert reply in (c("bad_recipient"), c("bad_syntax"), c("unknown_parameter"))
    if not sent:
        assert raw.cmd("RSET") == c("ok")
        return
    assert raw.cmd("DATA").startswith("354")
    mid = accepted(raw.data(message(sender=relay.tenant.sender)))
    assert sorted(recipients(relay.store, mid)) == sorted(sent.values())


_SESSIONS: dict[int, Raw] = {}


def _session(relay, ctx) -> Raw:
    """One logged-in connection for all examples of a run."""
    if id(relay) not in _SESSIONS:
        _SESSIONS.clear()
        _SESSIONS[id(relay)] = logged_in(relay, ctx)
    return _SESSIONS[id(relay)]
