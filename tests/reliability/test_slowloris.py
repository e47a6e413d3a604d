"""Slowloris: clients that hold connections open by going slowly are cut off by the configured
limits, and the slots they held come back.

Small limits keep the tests fast: bytes every second reset the idle timer (idle means no bytes
at all, also inside DATA), so the session lifetime is what ends a dribbling client; a silent
one is ended by the idle timeout; a stalled TLS handshake by the handshake timeout; a NOOP loop
by the command limit; the per-IP cap refuses the connection one past it.
(tests/inbound/test_listeners.py has the plain single-limit cases.)
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl

import pytest

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw, source_ip

LIMITS = {"idle_timeout": 1.5, "session_lifetime": 2.5, "max_connections_per_ip": 4,
          "command_call_limit": 30}
DRIBBLE = 1.0  # seconds between bytes: 1 byte/s


def c(name: str) -> str:
    return CATALOG[name].line()


@pytest.fixture
def slow_relay(relay_factory):
    return relay_factory(deliver=False, limits=LIMITS, tls={"handshake_timeout": 1.0})


def dribble(sock: socket.socket, data: bytes, pause: float = DRIBBLE) -> tuple[int, bytes]:
    """Send ``data`` one byte per ``pause``, reading whatever comes; stops at EOF.
    Returns (bytes sent, everything received); fails unless the server closed."""
    got = b""
    sock.settimeout(pause)
    sent = 0
    for i in range(len(data)):
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            break
        sent += 1
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    return sent, got + _rest(sock)


def _rest(sock: socket.socket) -> bytes:
    """Everything until the server closes (fails if it is still open after 10 s)."""
    sock.settimeout(10)
    out = b""
    try:
        while chunk := sock.recv(4096):
            out += chunk
    except TimeoutError:
        raise AssertionError("the server kept the connection open") from None
    except OSError:  # reset: closed as well
        pass
    return out


def test_one_byte_per_second_in_a_command_is_cut_by_the_session_lifetime(slow_relay):
    raw = Raw(slow_relay.ports["submission"], source=source_ip(80))
    assert raw.reply().startswith("220 ")
    command = b"EHLO " + b"a" * 40 + b".test\r\n"
    sent, got = dribble(raw.sock, command)
    assert sent < len(command)  # cut in the middle of the command
    assert got.decode() == c("timeout") + "\r\n"  # one reply, then EOF


def test_one_byte_per_second_in_data_is_cut_and_nothing_is_stored(slow_relay, client_ctx):
    t = slow_relay.tenant
    raw = Raw(slow_relay.ports["submissions"], client_ctx, source=source_ip(81))
    assert raw.reply().startswith("220 ")
    raw.cmd("EHLO client.test")
    token = base64.b64encode(f"\0{t.username}\0{t.secret}".encode()).decode()
    assert raw.cmd(f"AUTH PLAIN {token}") == c("auth_ok")
    assert raw.cmd(f"MAIL FROM:<{t.sender}>") == c("sender_ok")
    assert raw.cmd("RCPT TO:<user@example.test>") == c("recipient_ok")
    assert raw.cmd("DATA").startswith("354")
    body = f"From: {t.sender}\r\nSubject: slow\r\n\r\n".encode() + b"x" * 60 + b"\r\n.\r\n"
    sent, got = dribble(raw.sock, body)
    assert sent < len(body)
    assert got.decode() == c("timeout") + "\r\n"
    assert slow_relay.store.admin.messages(limit=10) == []


def _connect(port: int, source: str) -> Raw:
    return Raw(port, source=source)


def test_silent_connections_fill_the_per_ip_cap_then_time_out_and_free_it(slow_relay):
    port, ip = slow_relay.ports["submission"], source_ip(82)
    held = [_connect(port, ip) for _ in range(LIMITS["max_connections_per_ip"])]
    for raw in held:
        assert raw.reply().startswith("220 ")
    extra = _connect(port, ip)
    assert extra.reply() == c("too_many_connections")
    assert extra.replies_until_eof() == []
    other = _connect(port, source_ip(83))  # another client is not affected
    assert other.reply().startswith("220 ")
    for raw in held:  # silent: the idle timeout ends each one
        assert raw.reply() == c("timeout")
        assert raw.replies_until_eof() == []
    fresh = _connect(port, ip)
    assert fresh.reply().startswith("220 ")  # the slots came back


def test_noop_loop_is_cut_by_the_command_limit(slow_relay):
    raw = Raw(slow_relay.ports["submission"], source=source_ip(84))
    assert raw.reply().startswith("220 ")
    replies = []
    for _ in range(LIMITS["command_call_limit"] + 5):
        reply = raw.cmd("NOOP")
        if not reply:
            break
        replies.append(reply)
        if reply.startswith("421"):
            break
    assert replies[-1] == c("too_many_commands")
    assert set(replies[:-1]) == {c("ok")} and len(replies) <= LIMITS["command_call_limit"] + 1
    assert raw.replies_until_eof() == []


def _client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello record)."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="relay.test")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


@pytest.mark.parametrize("how", ["silent", "partial_client_hello"])
def test_stalled_tls_handshake_on_465_is_cut_and_frees_the_slot(slow_relay, how):
    port, ip = slow_relay.ports["submissions"], source_ip(85 if how == "silent" else 86)
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=10,
                                        source_address=(ip, 0))
               for _ in range(LIMITS["max_connections_per_ip"])]
    hello = _client_hello()[:20] if how == "partial_client_hello" else b""
    for sock in stalled:
        sent, got = dribble(sock, hello, pause=0.3) if hello else (0, _rest(sock))
        assert got == b""  # closed without a word: there is no TLS to speak in
        assert sent <= len(hello)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = Raw(port, ctx, source=ip)  # the cap's slots were given back
    assert raw.reply().startswith("220 ")


def test_stalled_starttls_handshake_is_cut(slow_relay):
    raw = Raw(slow_relay.ports["submission"], source=source_ip(87))
    assert raw.reply().startswith("220 ")
    raw.cmd("EHLO client.test")
    assert raw.cmd("STARTTLS") == c("tls_ready")
    _sent, got = dribble(raw.sock, _client_hello()[:20], pause=0.3)
    assert got == b""
