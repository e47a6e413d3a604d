"""Resource limits in front of aiohttp's request handler (SPEC §14, issue #15 item 5).

aiohttp has no timeout for a request head that arrives slowly (slowloris), no connection cap,
answers an over-long header line with ``400`` and logs every malformed request with a
traceback. ``Guard`` is the protocol factory of the listening socket; each connection gets a
``GuardedConnection`` that forwards to aiohttp's ``RequestHandler`` and adds:

- a connection cap (``[http] max_connections``, within the descriptor budget of
  ``inbound.descriptors``): one more connection is answered ``503`` and closed at once;
- a header timeout: the whole request head must arrive within ``[http] header_timeout`` of the
  connection (else ``408`` and close), and an idle timeout: no byte for ``[http] idle_timeout``
  closes the connection;
- ``431`` for a header line past 8 KiB or a head past 64 KiB, and ``414`` for a request line
  past 8 KiB (RFC 6585 §5, RFC 9110 §15.5.15), before aiohttp parses anything;
- one request per connection (``Connection: close`` on every response, see ``app``), so the
  head timeout covers every request;
- client errors logged as one line (``OneLineClientErrors``), never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("helo_smtp.http")

MAX_LINE = 8 * 1024
MAX_HEAD = 64 * 1024
LINGER = 2.0  # seconds a refused client's input is still read (and dropped)
_REASONS = {408: "Request Timeout", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def _response(status: int) -> bytes:
    extra = "Retry-After: 10\r\n" if status == 503 else ""
    return (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Length: 0\r\n{extra}"
            "Connection: close\r\n\r\n").encode("ascii")


class Guard:
    """Protocol factory: ``loop.create_server(Guard(runner.server, ...), host, port)``."""

    def __init__(self, make_handler: Callable[[], Any], max_connections: int,
                 header_timeout: float, idle_timeout: float) -> None:
        self.make_handler = make_handler
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.open: set[GuardedConnection] = set()

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self, self.make_handler())


class GuardedConnection(asyncio.Protocol):
    """One HTTP connection: limits here, HTTP in aiohttp's handler (``inner``)."""

    def __init__(self, guard: Guard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.client_ip = "-"
        self._refused = False  # over the cap: aiohttp never saw this connection
        self._rejected = False  # answered here (408, 414, 431): input is dropped
        self._in_head = True
        self._first_line = True
        self._line = 0  # bytes of the current head line so far
        self._line_start = b""  # its first byte
        self._head = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._idle: asyncio.TimerHandle | None = None

    # ---- connection life ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else "-"
        if len(self.guard.open) >= self.guard.max_connections:
            self._refused = True
            log.info("event=http_connection_refused client_ip=%s reason=too_many_connections",
                     self.client_ip)
            transport.write(_response(503))  # type: ignore[attr-defined]
            transport.close()
            return
        self.guard.open.add(self)
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.guard.header_timeout, self._head_timeout))
        self._idle = loop.call_later(self.guard.idle_timeout, self._idle_timeout)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (*self._timers, self._idle):
            if timer is not None:
                timer.cancel()
        if self._refused:
            return
        self.guard.open.discard(self)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._rejected or self.transport is None:
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = asyncio.get_running_loop().call_later(self.guard.idle_timeout,
                                                               self._idle_timeout)
        if self._in_head:
            status = self._scan(data)
            if status is not None:
                self._reject(status, "header_line_too_long" if status == 431
                             else "request_line_too_long")
                return
            if not self._in_head:
                for timer in self._timers:
                    timer.cancel()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused or self._rejected:
            return False  # the answer is out: close
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        if not self._refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self.inner.resume_writing()

    # ---- limits -------------------------------------------------------------------------
    def _scan(self, data: bytes) -> int | None:
        """Follow the request head through ``data``; a status to refuse it with, or None.
        Sets ``_in_head`` False at the blank line that ends the head."""
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl
            if self._line == 0 and end > pos:
                self._line_start = data[pos:pos + 1]
            self._line += end - pos
            self._head += end - pos + (nl >= 0)
            if self._line > MAX_LINE:
                return 414 if self._first_line else 431
            if self._head > MAX_HEAD:
                return 431
            if nl < 0:
                return None
            blank = self._line == 0 or (self._line == 1 and self._line_start == b"\r")
            self._line, pos = 0, nl + 1
            if not blank:
                self._first_line = False
            elif not self._first_line:  # (blank lines before the request line are skipped)
                self._in_head = False
                return None

    def _reject(self, status: int, reason: str) -> None:
        """Answer ``status`` and end the connection. What the client still sends is read and
        dropped for up to ``LINGER`` seconds (closing with unread input would reset the
        connection before the client reads the answer)."""
        log.info("event=http_client_error client_ip=%s status=%d reason=%s", self.client_ip,
                 status, reason)
        transport = self.transport
        if transport is None or transport.is_closing() or self._rejected:
            return
        self._rejected = True  # from now on input is dropped, aiohttp sees nothing more
        if self._idle is not None:
            self._idle.cancel()
        transport.write(_response(status))
        if transport.can_write_eof():
            transport.write_eof()
        self._timers.append(asyncio.get_running_loop().call_later(LINGER, transport.abort))

    def _head_timeout(self) -> None:
        if self._in_head:
            self._reject(408, "header_timeout")

    def _idle_timeout(self) -> None:
        log.info("event=http_client_error client_ip=%s reason=idle_timeout", self.client_ip)
        if self.transport is not None:
            self.transport.abort()  # a client that reads nothing would hold a close forever


class OneLineClientErrors(logging.Filter):
    """aiohttp logs a malformed request as ``Error handling request`` with a traceback: make it
    one line (the exception's class), so a client cannot fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "event=http_client_error client_ip=%s error=%s"
            record.args = (remote, type(exc).__name__)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_log_filter() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineClientErrors) for f in logger.filters):
        logger.addFilter(OneLineClientErrors())
