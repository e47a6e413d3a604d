"""Every way an SMTP connection can end gives back every slot it took (global and per IP).

Issue #15 item 6: a TCP health check (connect, close without a word) kept its slot until the
idle timeout. Each case runs on the plain asyncio loop and on uvloop (what ``helo-smtp serve``
runs), because the two deliver "connected" and "EOF" in a different order: uvloop can report
both before the session task has taken its first step.
"""

from __future__ import annotations

import socket
import struct

import pytest

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw, source_ip
from tests.support.waiting import wait_for

LIMITS = {"max_connections": 6, "max_connections_per_ip": 3, "idle_timeout": 60}
ROUNDS = 4  # more than the per-IP cap: a single leaked slot per round would show


def slots(relay) -> tuple[int, dict[str, int]]:
    """(connections counted globally, counts per client IP) on the relay's loop."""
    async def read() -> tuple[int, dict[str, int]]:
        inbound = relay.relay.inbound
        return len(inbound.sessions), dict(inbound._per_ip)
    return relay.run(read())


def released(relay) -> None:
    """Wait until every connection made so far has ended and given its slots back.

    A sentinel session from another address is greeted only once the listener has accepted
    every connection queued before it (the accept queue is FIFO), so the check cannot pass
    on a count taken before the server saw the earlier connections."""
    sentinel = Raw(relay.ports["submission"], source=source_ip(139))
    assert sentinel.reply().startswith("220 ")
    assert sentinel.cmd("QUIT") == CATALOG["bye"].line()
    sentinel.close()
    wait_for(lambda: slots(relay) == (0, {}), timeout=10, what="every slot given back")


def _connect(relay, ip: str, listener: str = "submission") -> socket.socket:
    return socket.create_connection(("127.0.0.1", relay.ports[listener]), timeout=10,
                                    source_address=(ip, 0))


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as HAProxy's and many load balancers' checks do."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _greeted(relay, ip: str) -> None:
    """A fresh client from ``ip`` still gets its greeting: the caps have room."""
    raw = Raw(relay.ports["submission"], source=ip)
    assert raw.reply().startswith("220 ")
    raw.cmd("QUIT")
    raw.close()


def _each_round(relay, ip: str, end) -> None:
    """``end(i)`` ends one connection from ``ip``, ``ROUNDS`` times; then every slot is back
    and a new client from ``ip`` is greeted."""
    for i in range(ROUNDS):
        end(i)
    released(relay)
    _greeted(relay, ip)


@pytest.fixture(params=["asyncio", "uvloop"])
def capped(request, make_relay):
    return make_relay(limits=LIMITS, uvloop=request.param == "uvloop")


def test_close_before_the_greeting(capped):
    ip = source_ip(131)
    _each_round(capped, ip, lambda _i: _connect(capped, ip).close())  # nc -z, a TCP probe


def test_reset_before_and_after_the_greeting(capped):
    ip = source_ip(132)

    def end(i: int) -> None:
        sock = _connect(capped, ip)
        if i % 2:
            assert sock.recv(100).startswith(b"220 ")
        _reset(sock)
    _each_round(capped, ip, end)


def test_close_during_the_starttls_handshake(capped):
    ip = source_ip(133)

    def end(_i: int) -> None:
        raw = Raw(capped.ports["submission"], source=ip)
        raw.reply()
        raw.cmd("EHLO client.test")
        assert raw.cmd("STARTTLS") == CATALOG["tls_ready"].line()
        raw.send(b"\x16\x03\x01\x00\xc8\x01")  # the start of a ClientHello, then gone
        raw.close()
    _each_round(capped, ip, end)


def test_close_during_the_implicit_tls_handshake(capped):
    ip = source_ip(134)

    def end(i: int) -> None:
        sock = _connect(capped, ip, "submissions")
        sock.sendall(b"\x16\x03\x01\x00\xc8\x01")
        _reset(sock) if i % 2 else sock.close()
    _each_round(capped, ip, end)


def test_close_and_reset_during_data(capped, client_ctx):
    ip = source_ip(135)
    t = capped.tenant
    for i in range(ROUNDS):
        raw = Raw(capped.ports["submission"], source=ip)
        raw.login(client_ctx, t.username, t.secret)
        assert raw.cmd(f"MAIL FROM:<{t.sender}>").startswith("250 ")
        assert raw.cmd("RCPT TO:<user@example.test>").startswith("250 ")
        assert raw.cmd("DATA").startswith("354 ")
        raw.send(b"Subject: half\r\n\r\n" + b"x" * 10_000)
        if i % 2:
            _reset(raw.sock)
        else:
            raw.close()
    released(capped)
    assert capped.store.admin.messages(limit=10) == []  # nothing half-stored
    _greeted(capped, ip)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_idle_timeout(make_relay, loop):
    capped = make_relay(limits={**LIMITS, "idle_timeout": 0.5}, uvloop=loop == "uvloop")
    ip = source_ip(136)
    held = [_connect(capped, ip) for _ in range(LIMITS["max_connections_per_ip"])]
    for sock in held:
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        assert got.endswith(f"{CATALOG['timeout'].line()}\r\n".encode())
        sock.close()
    released(capped)
    _greeted(capped, ip)


def test_quit(capped):
    ip = source_ip(137)

    def end(_i: int) -> None:
        raw = Raw(capped.ports["submission"], source=ip)
        raw.reply()
        assert raw.cmd("QUIT") == CATALOG["bye"].line()
        raw.close()
    _each_round(capped, ip, end)


def test_silent_implicit_tls_handshakes_meet_the_per_ip_cap(make_relay):
    """A 465 connection takes its slots before its handshake (the handshake runs inside the
    admitted session), so silent handshakes cannot hold descriptors past the caps."""
    relay = make_relay(limits=LIMITS, tls={"handshake_timeout": 60.0})
    ip = source_ip(138)
    held = [_connect(relay, ip, "submissions") for _ in range(LIMITS["max_connections_per_ip"])]
    wait_for(lambda: slots(relay)[1].get(ip) == len(held), what="the handshakes admitted")
    extra = _connect(relay, ip, "submissions")
    assert extra.recv(100) == b""  # closed at once, long before the handshake timeout
    for sock in held:
        _reset(sock)
    released(relay)
