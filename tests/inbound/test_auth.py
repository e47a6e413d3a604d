"""SMTP AUTH: TLS first, PLAIN and LOGIN, credential scope, failure limits, no secret in logs."""

from __future__ import annotations

import base64
import logging
import smtplib
import threading

import aiosmtplib
import pytest

from helo_smtp.errors import CATALOG
from helo_smtp.models import ChannelRef
from tests.inbound.clients import Raw, accepted, message, other_tenant, send, session, source_ip
from tests.support.waiting import wait_for


def plain(username: str, secret: str) -> str:
    return base64.b64encode(f"\0{username}\0{secret}".encode()).decode()


def tls_raw(relay, ctx, source: str | None = None) -> Raw:
    """A 465 connection after EHLO, ready for AUTH."""
    raw = Raw(relay.ports["submissions"], ctx, source=source)
    assert raw.reply().startswith("220 ")
    raw.cmd("EHLO client.test")
    return raw


def auth_plain(raw: Raw, username: str, secret: str) -> str:
    return raw.cmd(f"AUTH PLAIN {plain(username, secret)}")


def test_auth_before_tls_is_refused_and_not_offered(relay):
    raw = Raw(relay.ports["submission"])
    raw.reply()
    assert "AUTH" not in raw.cmd("EHLO client.test")
    t = relay.tenant
    assert auth_plain(raw, t.username, t.secret) == CATALOG["encryption_required"].line()
    assert raw.cmd("MAIL FROM:<app@sender.test>") == CATALOG["auth_required"].line()


async def test_plain_and_login_on_both_tls_modes(relay, client_ctx):
    t = relay.tenant
    for port, kwargs in ((relay.ports["submission"], {"start_tls": True}),
                         (relay.ports["submissions"], {"use_tls": True})):
        for method in ("auth_plain", "auth_login"):
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, tls_context=client_ctx,
                                     local_hostname="client.test", timeout=10, **kwargs)
            await client.connect()
            await client.ehlo()
            response = await getattr(client, method)(t.username, t.secret)
            assert f"{response.code} {response.message}" == CATALOG["auth_ok"].line()
            errors, reply = await client.sendmail(t.sender, ["user@example.test"], message())
            assert errors == {}
            accepted(f"250 {reply}")
            await client.quit()


def test_session_carries_the_channel_ref(relay, client_ctx):
    s = session(relay, client_ctx)
    s.noop()

    async def refs():
        return [x.session.auth_data for x in relay.relay.inbound.sessions]
    t = relay.tenant
    [ref] = relay.run(refs())
    assert isinstance(ref, ChannelRef)
    assert (ref.username, ref.account_id, ref.channel_id) == (
        t.username, t.account.id, t.channel.id)


def test_bad_credentials_then_three_strikes(relay, client_ctx):
    raw = tls_raw(relay, client_ctx)
    t = relay.tenant
    assert auth_plain(raw, t.username, "wrong") == CATALOG["auth_invalid"].line()
    assert auth_plain(raw, "nobody", t.secret) == CATALOG["auth_invalid"].line()
    assert auth_plain(raw, t.username, "wrong") == CATALOG["auth_locked"].line()
    assert raw.replies_until_eof() == []


def test_revoked_credential_is_invalid(relay, client_ctx):
    t = relay.tenant
    relay.store.credentials.revoke(t.username)
    raw = tls_raw(relay, client_ctx)
    assert auth_plain(raw, t.username, t.secret) == CATALOG["auth_invalid"].line()


def test_protocol_errors_during_auth(relay, client_ctx):
    raw = tls_raw(relay, client_ctx)
    assert raw.cmd("AUTH CRAM-MD5") == CATALOG["auth_mechanism_unknown"].line()
    assert raw.cmd("AUTH PLAIN not-base64!") == CATALOG["bad_auth_data"].line()
    assert raw.cmd("AUTH PLAIN " + base64.b64encode(b"no-nul").decode()) == \
        CATALOG["bad_auth_data"].line()
    assert raw.cmd("AUTH LOGIN").startswith("334 ")
    assert raw.cmd("*") == CATALOG["auth_aborted"].line()
    t = relay.tenant
    assert raw.cmd("AUTH LOGIN " + base64.b64encode(t.username.encode()).decode()) == \
        "334 " + base64.b64encode(b"Password:").decode()
    assert raw.cmd(base64.b64encode(t.secret.encode()).decode()) == CATALOG["auth_ok"].line()
    assert auth_plain(raw, t.username, t.secret) == CATALOG["bad_sequence"].line()


def test_ip_window_locks_even_the_right_secret_until_it_passes(make_relay, client_ctx):
    relay = make_relay(limits={"auth_failures_per_ip": 4, "auth_failure_window": 1.0})
    t = relay.tenant
    for _ in range(2):
        raw = tls_raw(relay, client_ctx)
        auth_plain(raw, t.username, "wrong")
        auth_plain(raw, t.username, "wrong")
        raw.close()
    raw = tls_raw(relay, client_ctx)
    assert auth_plain(raw, t.username, t.secret) == CATALOG["auth_locked"].line()
    other_ip = tls_raw(relay, client_ctx, source=source_ip(31))
    assert auth_plain(other_ip, t.username, t.secret) == CATALOG["auth_ok"].line()

    def unlocked():
        r = tls_raw(relay, client_ctx)
        return auth_plain(r, t.username, t.secret) == CATALOG["auth_ok"].line()
    wait_for(unlocked, timeout=10, interval=0.2, what="the failure window to pass")


def test_username_failures_from_other_ips_slow_but_never_lock(make_relay, client_ctx):
    relay = make_relay(limits={"auth_failures_per_ip": 100, "auth_failures_per_user": 3,
                               "auth_slowdown_max": 0.2})
    t = relay.tenant
    for n in (41, 42, 43, 45):
        raw = tls_raw(relay, client_ctx, source=source_ip(n))
        assert auth_plain(raw, t.username, "wrong") == CATALOG["auth_invalid"].line()
    fresh = tls_raw(relay, client_ctx, source=source_ip(44))
    assert auth_plain(fresh, t.username, t.secret) == CATALOG["auth_ok"].line()
    second = other_tenant(relay.store, "beta", "beta.test")
    fresh = tls_raw(relay, client_ctx, source=source_ip(44))
    assert auth_plain(fresh, second.username, second.secret) == CATALOG["auth_ok"].line()


def test_brute_force_is_locked_out_and_the_loop_stays_responsive(relay, client_ctx):
    t = relay.tenant
    bystander = session(relay, client_ctx, source=source_ip(51))
    stop = threading.Event()
    noops: list[int] = []

    def keep_busy():
        while not stop.is_set():
            noops.append(bystander.noop()[0])

    worker = threading.Thread(target=keep_busy)
    worker.start()
    replies: list[str] = []
    try:
        while len(replies) < 50:
            raw = tls_raw(relay, client_ctx)
            while len(replies) < 50:
                reply = auth_plain(raw, t.username, f"guess-{len(replies)}")
                replies.append(reply)
                if reply.startswith("421"):
                    assert raw.replies_until_eof() == []
                    break
    finally:
        stop.set()
        worker.join(10)
    assert replies.count(CATALOG["auth_invalid"].line()) < relay.cfg.limits.auth_failures_per_ip
    assert replies[-30:] == [CATALOG["auth_locked"].line()] * 30
    assert auth_plain(tls_raw(relay, client_ctx), t.username, t.secret) == \
        CATALOG["auth_locked"].line()
    assert noops and set(noops) == {250}  # served all along
    accepted(send(bystander, t.sender, ["user@example.test"], message()))


def test_secrets_never_reach_the_logs(relay, client_ctx, caplog):
    caplog.set_level(logging.DEBUG)
    t = relay.tenant
    wrong = "Wr0ngButSecretish-Value"
    raw = tls_raw(relay, client_ctx)
    assert auth_plain(raw, t.username, wrong) == CATALOG["auth_invalid"].line()
    assert raw.cmd("AUTH LOGIN").startswith("334 ")
    raw.cmd(base64.b64encode(t.username.encode()).decode())
    assert raw.cmd(base64.b64encode(t.secret.encode()).decode()) == CATALOG["auth_ok"].line()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        session(relay, client_ctx, secret=wrong + "2")
    text = caplog.text
    assert "event=auth_failed" in text and "event=auth_ok" in text
    for secret in (t.secret, wrong, wrong + "2"):
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text
        assert plain(t.username, secret) not in text
