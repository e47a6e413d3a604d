"""The main process checks that the delivery process still works: a ping over their channel.

systemd's watchdog (``WatchdogSec=``) is fed by the main process's loop, so on its own it
would not notice a delivery process that hangs (a deadlock, a stopped process, a loop stuck
in a call that never returns): mail would wait while the service looks healthy. So the main
process sends ``PING`` + a sequence number on the channel it already shares with the child
(``deliverer.py``), and the child answers ``PONG`` + the same number from its event loop: an
answer proves that loop turns. Timing starts when the child says ``READY`` (its workers are
up: a child still importing and opening the store is not hung). A ping that is not answered
within half the watchdog interval (``sdnotify.watchdog_interval()``, the interval at which the
main process feeds systemd; ``DEFAULT_TIMEOUT`` without a watchdog, half of the shipped unit's
``WatchdogSec=60``; never under ``MIN_TIMEOUT``, since a busy machine can hold a healthy loop
back for a moment) gets the child killed (SIGKILL: a stopped process ignores anything else).
The usual restart then follows (``DeliveryProcess._supervise``): its leases and connection
slots are given back at once, the event is logged (``event=delivery_process_unresponsive``)
and counted in ``helo_delivery_process_restarts_total{reason="unresponsive"}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from helo_smtp.runtime import sdnotify

log = logging.getLogger("helo_smtp.daemon")

PING, PONG, READY = b"p", b"P", b"R"
DEFAULT_TIMEOUT = 30.0  # seconds, without a systemd watchdog
MIN_TIMEOUT = 5.0


def ping_timeout() -> float:
    """Seconds a ping may go unanswered: half the watchdog interval, at least MIN_TIMEOUT."""
    return max(MIN_TIMEOUT, sdnotify.watchdog_interval() or DEFAULT_TIMEOUT)


def pong(data: bytes) -> bytes | None:
    """The child's answer to a ping datagram (None: not a ping)."""
    return PONG + data[len(PING):] if data.startswith(PING) else None


class ChildWatch:
    """Parent side: ``send(datagram)`` a ping every ``timeout / 2``; when the oldest unanswered
    one is ``timeout`` seconds old, ``kill()`` once and wait for ``restarted()``."""

    def __init__(self, send: Callable[[bytes], None], kill: Callable[[], None],
                 timeout: float) -> None:
        self.send, self.kill, self.timeout = send, kill, timeout
        self._seq = 0
        self._answered = 0
        self._sent_at: dict[int, float] = {}
        self._ready = asyncio.Event()

    def answer(self, data: bytes) -> None:
        """A datagram from the child: READY starts the pings; a pong settles its ping and
        every older one."""
        if data == READY:
            self._ready.set()
        elif data.startswith(PONG):
            try:
                seq = int(data[len(PONG):])
            except ValueError:
                return
            self._answered = max(self._answered, seq)
            for old in [s for s in self._sent_at if s <= seq]:
                del self._sent_at[old]

    def restarted(self) -> None:
        """A new child: pings to the old one no longer count; wait for its READY."""
        self._sent_at.clear()
        self._answered = self._seq
        self._ready.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._ready.wait()
        while True:
            self._seq += 1
            self._sent_at[self._seq] = loop.time()
            self.send(PING + str(self._seq).encode())
            await asyncio.sleep(self.timeout / 2)
            oldest = min(self._sent_at.values(), default=None)
            if oldest is not None and loop.time() - oldest >= self.timeout:
                log.error("event=delivery_process_unresponsive timeout=%.1fs msg=no answer to "
                          "a ping; killing it", self.timeout)
                self._sent_at.clear()
                self.kill()
