"""The HTTP listener's resource limits (SPEC §14, issue #15 item 5) on a real socket: header
and idle timeouts, the connection cap, 431 for long header lines, one log line per client
error and never a traceback."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from helo_smtp import config as config_mod
from helo_smtp.http.app import HTTPServer
from helo_smtp.tracking import tokens

LIMITS = {"header_timeout": 0.5, "idle_timeout": 1.0, "max_connections": 5}
DEADLINE = 10.0  # how long a broken test takes to fail, not a latency bound


@pytest.fixture
async def limited(store):
    cfg = config_mod.from_dict({  # a small SMTP reserve: the descriptor budget is not the cap
        "http": {"listen": "127.0.0.1:0", "secret": "s", **LIMITS},
        "limits": {"max_connections": 20},
        "pools": {"transactional": {"max_connections": 5}, "broadcast": {"max_connections": 5}}})
    server = HTTPServer(cfg, store)
    await server.start()
    yield server
    await server.stop()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (fails if it never does)."""
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE)
    except ConnectionResetError:
        return b""


async def _healthy(port: int) -> bytes:
    reader, writer = await _open(port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n")
    return (await _answer(reader)).split(b"\r\n", 1)[0]


def _client_error_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("aiohttp", "helo_smtp.http"))
            and r.levelno >= logging.INFO and "event=http_listening" not in r.getMessage()]


async def test_slowloris_heads_are_cut_by_the_header_timeout(limited):
    conns = [await _open(limited.port) for _ in range(4)]
    for _reader, writer in conns:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\nX-Slow: a")  # never ends
    for reader, writer in conns:
        writer.write(b"b")  # bytes keep coming: the idle timer alone would not fire
        assert (await _answer(reader)).startswith(b"HTTP/1.1 408 ")
    assert await _healthy(limited.port) == b"HTTP/1.1 200 OK"


async def test_silent_and_stalled_body_connections_are_closed(limited):
    silent_r, _silent_w = await _open(limited.port)
    body_r, body_w = await _open(limited.port)
    token = tokens.make_token(b"s", tokens.UNSUBSCRIBE, str(uuid.uuid4()), "a@x.test")
    body_w.write(f"POST /u/{token} HTTP/1.1\r\n".encode()
                 + b"Host: relay.test\r\nContent-Length: 100\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n\r\nList-Unsub")
    assert (await _answer(silent_r)).startswith(b"HTTP/1.1 408 ")
    assert await _answer(body_r) == b""  # the idle timeout drops it without a word


async def test_connection_cap_answers_503_then_frees(limited):
    held = [await _open(limited.port) for _ in range(LIMITS["max_connections"])]
    for _reader, writer in held:
        writer.write(b"G")  # started, not finished: each holds its slot
    while len(limited.guard.open) < LIMITS["max_connections"]:
        await asyncio.sleep(0.01)  # the server accepts on this same loop
    reader, _writer = await _open(limited.port)
    assert (await _answer(reader)).startswith(b"HTTP/1.1 503 ")
    for _reader, writer in held:
        writer.close()
    for _ in range(50):  # the slots come back as the server sees the closes
        if await _healthy(limited.port) == b"HTTP/1.1 200 OK":
            break
    else:
        raise AssertionError("the cap never freed")


@pytest.mark.parametrize(("size", "status"), [(200_000, 431), (9 * 1024, 431),
                                              (8 * 1024 - 100, 200)])
async def test_header_line_limit_is_431_in_one_log_line(limited, caplog, size, status):
    caplog.set_level(logging.DEBUG)
    reader, writer = await _open(limited.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\nX-Big: " + b"a" * size
                 + b"\r\n\r\n")
    first = (await _answer(reader)).split(b"\r\n", 1)[0]
    assert first.startswith(f"HTTP/1.1 {status} ".encode())
    records = _client_error_records(caplog)
    assert not [r for r in caplog.records if r.exc_info]  # never a traceback
    assert len(records) == (1 if status == 431 else 0)


async def test_long_request_line_is_414(limited):
    reader, writer = await _open(limited.port)
    writer.write(b"GET /c/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: relay.test\r\n\r\n")
    assert (await _answer(reader)).startswith(b"HTTP/1.1 414 ")


@pytest.mark.parametrize("request_bytes", [
    b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"GET / HTTP/9.9\r\n\r\n",
])
async def test_malformed_requests_are_one_log_line(limited, caplog, request_bytes):
    caplog.set_level(logging.DEBUG)
    reader, writer = await _open(limited.port)
    writer.write(request_bytes)
    assert (await _answer(reader)).startswith(b"HTTP/1.")
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in _client_error_records(caplog)
                if "http_client_error" in r.getMessage()]) <= 1
