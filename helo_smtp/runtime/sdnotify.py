"""systemd's notify protocol, spoken directly (no libsystemd): ``Type=notify`` and the watchdog.

The protocol (sd_notify(3), "Notify socket" in systemd.exec(5)) is one datagram of
newline-separated ``KEY=VALUE`` assignments sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET``. A name starting with ``@`` lives in Linux's abstract namespace: the ``@``
becomes a NUL byte. Outside systemd the variable is unset and every call here is a cheap no-op.

``ready(relay)`` is called by ``daemon.serve`` once the listeners are bound and the store is
open, so systemd (and ``systemctl start``) only report the service up when port 587 already
accepts connections. ``watchdog_loop(relay)`` pings ``WATCHDOG=1`` at half of
``$WATCHDOG_USEC`` (the interval sd_watchdog_enabled(3) recommends) from the event loop itself:
a loop that stops turning misses the ping and systemd restarts the service (``WatchdogSec=``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

log = logging.getLogger("helo_smtp.sdnotify")

STATUS_REFRESH = 30.0  # seconds between STATUS= updates when no watchdog is asked for
QUEUE_QUERY_TIMEOUT = 10.0  # a slow count never holds back the watchdog ping for long


def _address(name: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as a socket address; ``@name`` is the abstract ``\\0name``."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(state: str) -> bool:
    """Send one notify datagram (``state`` holds ``KEY=VALUE`` lines); True if it was sent.

    False when not run under systemd (no ``$NOTIFY_SOCKET``) or when the send fails: a
    notification is never worth crashing the relay for.
    """
    name = os.environ.get("NOTIFY_SOCKET", "")
    if not name or name[0] not in "/@":
        return False  # unset, or a vsock/other address family we do not speak
    try:
        # Non-blocking: a manager that stops reading must not stall the event loop (a full
        # queue fails the send with BlockingIOError instead of blocking every session).
        flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        with socket.socket(socket.AF_UNIX, flags) as sock:
            sock.connect(_address(name))
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError as exc:
        log.warning("event=sd_notify_failed error=%s", exc.__class__.__name__)
        return False
    return True


def _status_value(text: str) -> str:
    """STATUS= is one line: a newline would start a new assignment."""
    return " ".join(text.split())


def queue_summary(depths: dict[str, tuple[int, float | None]]) -> str:
    """``queue transactional=3 broadcast=0`` from ``Queue.depth_by_type()``."""
    order = sorted(depths, key=lambda mt: (mt != "transactional", mt))
    return "queue " + " ".join(f"{mt}={depths[mt][0]}" for mt in order)


def listener_summary(ports: dict[str, int]) -> str:
    """``listening submission:587 submissions:465`` from ``Relay.ports``."""
    return "listening " + " ".join(f"{name}:{port}" for name, port in ports.items())


def _status(relay: Any, depths: dict[str, tuple[int, float | None]] | None) -> str:
    queue = queue_summary(depths) if depths is not None else "queue unknown"
    return "STATUS=" + _status_value(f"{listener_summary(relay.ports)}; {queue}")


def ready(relay: Any) -> bool:
    """Tell systemd the relay is up: READY=1 plus listener ports and queue sizes."""
    try:
        depths = relay.store.queue.depth_by_type()
    except Exception as exc:  # noqa: BLE001 - readiness must not hinge on a status line
        log.warning("event=queue_depth_failed error=%s", exc.__class__.__name__)
        depths = None
    return notify(f"READY=1\n{_status(relay, depths)}")


def watchdog_interval() -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is asked
    for this process (sd_watchdog_enabled(3): ``$WATCHDOG_PID``, when set, must be our pid)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None


async def _ping_loop(interval: float) -> None:
    """WATCHDOG=1 on a fixed schedule, independent of anything that might be slow."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        notify("WATCHDOG=1")
        # After a stall, ping once and go back to the schedule (no burst of catch-up pings).
        due = max(due + interval, loop.time())
        await asyncio.sleep(due - loop.time())


async def _status_loop(relay: Any, period: float) -> None:
    """STATUS= with the queue sizes every ``period``. The count runs in a thread; while one is
    still running (a store that hangs) no second one starts, so threads never pile up."""
    query: asyncio.Future[Any] | None = None
    try:
        while True:
            if query is None:
                query = asyncio.ensure_future(asyncio.to_thread(relay.store.queue.depth_by_type))
            done, _ = await asyncio.wait({query}, timeout=QUEUE_QUERY_TIMEOUT)
            depths = None
            if done:
                try:
                    depths = query.result()
                except Exception as exc:  # noqa: BLE001 - a status line is best effort
                    log.warning("event=queue_depth_failed error=%s", exc.__class__.__name__)
                query = None
            notify(_status(relay, depths))
            await asyncio.sleep(period)
    finally:
        if query is not None:
            query.cancel()


async def watchdog_loop(relay: Any) -> None:
    """Ping the systemd watchdog and refresh STATUS= until cancelled.

    With a watchdog: ``WATCHDOG=1`` every half interval and a STATUS= line with the queue sizes
    as often (the status query runs in a thread and never delays a ping). Without a watchdog
    but under systemd: STATUS= every 30 s. Outside systemd: return at once.
    """
    interval = watchdog_interval()
    if interval is None:
        if os.environ.get("NOTIFY_SOCKET"):
            await _status_loop(relay, STATUS_REFRESH)
        return
    await asyncio.gather(_ping_loop(interval), _status_loop(relay, interval))
