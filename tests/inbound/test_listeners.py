"""Listeners: banner, extensions, TLS (STARTTLS and implicit), timeouts, caps, drain, reload."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import subprocess

import pytest

from helo_smtp.errors import CATALOG
from helo_smtp.inbound.listener import InboundServer
from helo_smtp.models import MailType
from tests.inbound.clients import Raw, accepted, message, send, session, source_ip
from tests.support.waiting import wait_for

EXTENSIONS = ["PIPELINING", "SIZE 26214400", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]


def ehlo_keywords(reply: str) -> list[str]:
    return [line[4:] for line in reply.split("\n")[1:]]


def test_banner_has_no_version_and_extensions_follow_tls(relay, client_ctx):
    raw = Raw(relay.ports["submission"])
    banner = raw.reply()
    assert re.fullmatch(r"220 relay\.test ESMTP", banner), banner
    assert ehlo_keywords(raw.cmd("EHLO client.test")) == [*EXTENSIONS, "STARTTLS"]
    assert raw.cmd("STARTTLS") == CATALOG["tls_ready"].line()
    raw.starttls(client_ctx)
    assert ehlo_keywords(raw.cmd("EHLO client.test")) == [*EXTENSIONS, "AUTH PLAIN LOGIN"]
    assert raw.cmd("STARTTLS") == CATALOG["bad_sequence"].line()  # TLS is already on

    implicit = Raw(relay.ports["submissions"], client_ctx)
    assert implicit.reply() == banner
    assert ehlo_keywords(implicit.cmd("EHLO client.test")) == [*EXTENSIONS, "AUTH PLAIN LOGIN"]
    assert implicit.cmd("STARTTLS") == CATALOG["bad_sequence"].line()


def test_starttls_with_pipelined_command_gets_one_reply_after_handshake(relay, client_ctx):
    raw = Raw(relay.ports["submission"])
    raw.reply()
    raw.cmd("EHLO client.test")
    raw.send(b"STARTTLS\r\nNOOP\r\n")  # the NOOP was sent in clear text: it must be dropped
    assert raw.reply() == CATALOG["tls_ready"].line()
    raw.starttls(client_ctx)
    raw.send(b"NOOP\r\nQUIT\r\n")
    assert raw.replies_until_eof() == [CATALOG["ok"].line(), CATALOG["bye"].line()]


def test_plaintext_on_the_implicit_tls_port_fails_the_handshake(relay, client_ctx):
    raw = Raw(relay.ports["submissions"])
    raw.send(b"EHLO client.test\r\n")
    assert raw.replies_until_eof() == []  # no banner, no reply: the TLS handshake failed
    ok = Raw(relay.ports["submissions"], client_ctx)
    assert ok.reply().startswith("220 ")  # the listener is unharmed


def test_tls_handshake_timeout_closes_silent_clients(make_relay):
    relay = make_relay(tls={"handshake_timeout": 0.3})
    assert Raw(relay.ports["submissions"]).replies_until_eof() == []
    raw = Raw(relay.ports["submission"])
    raw.reply()
    raw.cmd("EHLO client.test")
    assert raw.cmd("STARTTLS") == CATALOG["tls_ready"].line()
    assert raw.replies_until_eof() == []  # no ClientHello within the timeout


def test_idle_timeout_answers_421_and_closes(make_relay):
    relay = make_relay(limits={"idle_timeout": 0.3})
    raw = Raw(relay.ports["submission"])
    raw.reply()
    assert raw.replies_until_eof() == [CATALOG["timeout"].line()]


def test_session_lifetime_ends_a_busy_session(make_relay):
    relay = make_relay(limits={"session_lifetime": 0.5})
    raw = Raw(relay.ports["submission"])
    raw.reply()
    last = wait_for(lambda: (r := raw.cmd("NOOP")) != CATALOG["ok"].line() and r,
                    timeout=10, what="the lifetime to end the session")
    assert last == CATALOG["timeout"].line()
    assert raw.replies_until_eof() == []


def test_per_ip_connection_cap(make_relay):
    relay = make_relay(limits={"max_connections_per_ip": 2})
    port = relay.ports["submission"]
    first, second = Raw(port), Raw(port)
    assert first.reply().startswith("220 ") and second.reply().startswith("220 ")
    third = Raw(port)
    assert third.replies_until_eof() == [CATALOG["too_many_connections"].line()]
    elsewhere = Raw(port, source=source_ip(21))  # another client IP is not affected
    assert elsewhere.reply().startswith("220 ")
    first.cmd("QUIT")
    wait_for(lambda: Raw(port).reply().startswith("220 "), what="a freed slot")


def test_global_connection_cap(make_relay):
    relay = make_relay(limits={"max_connections": 2})
    port = relay.ports["broadcast"]
    a, b = Raw(port, source=source_ip(22)), Raw(port, source=source_ip(23))
    assert a.reply().startswith("220 ") and b.reply().startswith("220 ")
    c = Raw(port, source=source_ip(24))
    assert c.replies_until_eof() == [CATALOG["too_many_connections"].line()]


def test_command_call_limit(make_relay):
    relay = make_relay(limits={"command_call_limit": 5})
    raw = Raw(relay.ports["submission"])
    raw.reply()
    assert [raw.cmd("NOOP") for _ in range(5)] == [CATALOG["ok"].line()] * 5
    assert raw.cmd("NOOP") == CATALOG["too_many_commands"].line()
    assert raw.replies_until_eof() == []


def test_default_call_limit_passes_100_messages_of_10_recipients(relay, client_ctx):
    s = session(relay, client_ctx)
    for i in range(100):
        rcpts = [f"u{i}-{j}@example.test" for j in range(10)]
        accepted(send(s, relay.tenant.sender, rcpts, message(subject=f"m{i}")))
    s.quit()
    assert relay.store.queue.pending_count() == 1000


def test_stop_accepting_then_drain(relay, client_ctx):
    busy = session(relay, client_ctx)
    idle = Raw(relay.ports["submission"])
    idle.reply()

    async def stop_accepting():
        relay.relay.inbound.stop_accepting()
    relay.run(stop_accepting())
    assert Raw(relay.ports["submission"]).replies_until_eof() == [
        CATALOG["shutting_down"].line()]
    assert idle.cmd("NOOP") == CATALOG["ok"].line()  # open sessions carry on

    busy.mail(relay.tenant.sender)
    busy.rcpt("user@example.test")  # a transaction is open: drain must wait for it
    drained = asyncio.run_coroutine_threadsafe(relay.relay.inbound.drain(10.0), relay.lt.loop)
    assert idle.replies_until_eof() == [CATALOG["shutting_down"].line()]
    code, text = busy.data(message())
    accepted(f"{code} {text.decode()}")
    drained.result(15)
    assert busy.sock.recv(1024) == (CATALOG["shutting_down"].line() + "\r\n").encode()


def test_unnamed_listener_is_keyed_by_address_and_port(make_relay):
    relay = make_relay(listeners=[{"address": "127.0.0.1", "port": 0, "tls": "starttls",
                                   "mail_type": "header"}])
    assert list(relay.ports) == ["127.0.0.1:0"]
    assert Raw(relay.ports["127.0.0.1:0"]).reply().startswith("220 ")


def test_reload_applies_new_limits_to_new_sessions(relay, client_ctx):
    new_cfg = dataclasses.replace(
        relay.cfg, limits=dataclasses.replace(relay.cfg.limits, max_recipients=2))

    async def reload():
        relay.relay.inbound.reload(new_cfg)
    relay.run(reload())
    s = session(relay, client_ctx)
    s.mail(relay.tenant.sender)
    assert [s.rcpt(f"u{i}@example.test")[0] for i in range(3)] == [250, 250, 452]


def test_accepts_wake_the_worker_of_their_mail_type(relay, client_ctx):
    """InboundServer on its own: start() names its ports, every accept calls wake(mail_type)
    once, an idempotent replay does not."""
    woke: list[MailType] = []

    async def start():
        server = InboundServer(relay.cfg, relay.store.submission, woke.append)
        return server, await server.start()
    server, ports = relay.run(start())
    assert set(ports) == {"submission", "submissions", "broadcast"}
    own = type("Ports", (), {"ports": ports, "tenant": relay.tenant})()
    keyed = message(headers={"X-Helo-Idempotency-Key": "k1"})
    for listener in ("submission", "broadcast", "submission"):
        s = session(own, client_ctx, listener)
        accepted(send(s, relay.tenant.sender, ["u@example.test"],
                      keyed if listener == "submission" else message()))
        s.quit()
    assert woke == [MailType.TRANSACTIONAL, MailType.BROADCAST]
    relay.run(server.drain(1.0))


swaks = shutil.which("swaks")


@pytest.mark.skipif(swaks is None, reason="swaks is not installed")
@pytest.mark.parametrize("listener,tls", [("submission", "--tls"),
                                          ("submissions", "--tls-on-connect")])
def test_swaks_smoke(relay, listener, tls):
    t = relay.tenant
    out = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(relay.ports[listener]), tls,
         "--ehlo", "client.test", "--auth", "PLAIN", "--auth-user", t.username,
         "--auth-password", t.secret, "--from", t.sender, "--to", "user@example.test",
         "--header", "X-Helo-Tag: swaks", "--body", "hello from swaks"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    reply = re.search(r"<~\s+(250 2\.0\.0 Ok: queued as \S+)", out.stdout)
    assert reply, out.stdout
    stored = relay.store.queue.load_message(accepted(reply.group(1)))
    assert stored is not None and stored.tags == ["swaks"]
    assert b"X-Helo-Tag" not in stored.raw
