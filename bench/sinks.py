"""The receiving ends: Postfix's smtp-sink (C, counting), and aiosmtpd sinks (Python).

* ``CSink``: ``smtp-sink -c`` in a child process; a reader thread timestamps its running counter
  (``mesg=N``), so end-to-end runs know when the N-th message arrived. Options script it:
  ``-w 1`` (wait before answering DATA: a slow destination), ``-r rcpt -b "451 ..."``
  (every recipient deferred: an undeliverable destination).
* ``StampSink``: an aiosmtpd server on its own loop thread that records, per ``X-Bench-Id``,
  when the message arrived (transactional probe latency).
* ``AioCeilingSink``: a bare aiosmtpd server (STARTTLS + AUTH PLAIN accepting anything, DATA
  answered 250 at once) in a child process; the load client's ceiling (``python -m bench.aiosink``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.smtp import SMTP

from bench import postfix, procs
from tests.support.process import terminate

_COUNTER = re.compile(rb"mesg=(\d+)\r")  # complete updates only


class CSink:
    """``smtp-sink`` on host:port with a timestamped message counter."""

    def __init__(self, host: str, port: int, *options: str, backlog: int = 1024) -> None:
        self.host, self.port, self.options, self.backlog = host, port, options, backlog
        self.count = 0
        self.marks: list[tuple[float, int]] = []  # (wall clock, count) at every change
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()

    def start(self) -> CSink:
        cmd = [postfix._tool("smtp-sink"), "-c", "-u", postfix.POSTFIX_USER, *self.options,
               f"{self.host}:{self.port}", str(self.backlog)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._read, name="csink-reader", daemon=True)
        self._thread.start()
        procs.wait_port(self.host, self.port, 10)
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            hits = _COUNTER.findall(chunk[-64:]) or _COUNTER.findall(chunk)
            if not hits:
                continue
            n = int(hits[-1])
            if n != self.count:
                with self._cond:
                    self.count = n
                    self.marks.append((time.time(), n))
                    self._cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        """Block until the counter reaches ``n``; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def time_of(self, n: int) -> float | None:
        """Wall clock when the counter first reached ``n`` (None: not yet)."""
        with self._cond:
            i = bisect.bisect_left([c for _, c in self.marks], n)
            return self.marks[i][0] if i < len(self.marks) else None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)


class _StampHandler:
    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.count = 0
        self._parser = BytesHeaderParser()

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        now = time.time()
        content = envelope.original_content or envelope.content  # type: ignore[attr-defined]
        tag = self._parser.parsebytes(content).get("X-Bench-Id")
        if tag:
            self.received.setdefault(tag.strip(), now)
        self.count += 1
        return "250 2.0.0 Ok: stamped"


class StampSink:
    """aiosmtpd on host:port in a thread; ``received`` maps X-Bench-Id -> arrival time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.handler = _StampHandler()
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="stamp-sink",
                                        daemon=True)

    @property
    def received(self) -> dict[str, float]:
        return self.handler.received

    def start(self) -> StampSink:
        self._thread.start()
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; with proto 0
        # every multi-line reply (EHLO) waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))

        async def serve() -> asyncio.base_events.Server:
            return await self.loop.create_server(
                lambda: SMTP(self.handler, hostname="stamp.bench.test", ident="bench-stamp"),
                sock=sock)

        self._server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class AioCeilingSink:
    """``python -m bench.aiosink`` in a child process (its own core, like a relay)."""

    def __init__(self, host: str, port: int, cert: tuple[str, str]) -> None:
        self.host, self.port, self.cert = host, port, cert
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AioCeilingSink:
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.aiosink", self.host, str(self.port), *self.cert],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.wait_port(self.host, self.port, 20)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, grace=10)
