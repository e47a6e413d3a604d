"""A notify socket of the test's own: what systemd listens on for sd_notify datagrams."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import uuid


class NotifySocket:
    """An AF_UNIX datagram socket bound to a short path or an abstract ``@name``.

    ``env`` is the ``$NOTIFY_SOCKET`` value to hand the process under test; ``recv`` returns
    each datagram as text, ``until`` collects datagrams until one satisfies a condition. A
    thread reads the socket all the time, as systemd does: the sender's queue (10 datagrams)
    never fills while a test is busy elsewhere.
    """

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"helo-smtp-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.env = "@" + name
        else:
            # sun_path holds 108 bytes: pytest's tmp_path can be longer than that.
            self._dir = tempfile.mkdtemp(prefix="hsn-", dir="/tmp")
            self.env = os.path.join(self._dir, "notify")
            self.sock.bind(self.env)
        self.received: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._closed = threading.Event()
        self.sock.settimeout(0.1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(self.sock.recv(65536).decode())
            except TimeoutError:
                continue

    def recv(self, timeout: float = 10.0) -> str:
        try:
            data = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no notify datagram within {timeout}s; got {self.received}"
                                 ) from None
        self.received.append(data)
        return data

    def until(self, cond, timeout: float = 10.0) -> list[str]:
        """Datagrams received until (and including) the first one with ``cond(datagram)``."""
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s; got {got}")
            got.append(self.recv(left))
            if cond(got[-1]):
                return got

    def close(self) -> None:
        self._closed.set()
        self._reader.join(5)
        self.sock.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def fields(datagram: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of one datagram."""
    return dict(line.split("=", 1) for line in datagram.splitlines() if "=" in line)
