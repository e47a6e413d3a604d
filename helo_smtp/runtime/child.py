"""The delivery process's entry (``python -m helo_smtp.runtime.child``): both delivery workers,
no listeners, until SIGTERM or the parent's exit. The parent's side (spawn, wake, hand-over,
restart) is ``deliverer.py``; why there are two processes is said there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import signal
import socket
import sys
from typing import Any

from helo_smtp.runtime.childwatch import READY, pong
from helo_smtp.runtime.deliverer import HANDOVER, RECV_BYTES, WAKE_CODES

log = logging.getLogger("helo_smtp.daemon")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


async def run_child(cfg: Any, channel_fd: int) -> None:
    """The delivery child: both workers, no listeners, until SIGTERM or the parent's exit."""
    from helo_smtp.runtime.daemon import Relay

    relay = Relay(cfg, accept=False)
    await relay.start()
    gc.collect()
    gc.freeze()  # as in serve(): start-up objects leave the collector's generations
    running = asyncio.get_running_loop()
    done = asyncio.Event()
    channel = socket.socket(fileno=channel_fd)
    channel.setblocking(False)

    def on_readable() -> None:
        while True:
            try:
                data = channel.recv(RECV_BYTES)
            except BlockingIOError:
                return
            if not data:  # the parent's end is closed: it is gone
                running.remove_reader(channel_fd)
                done.set()
                return
            reply = pong(data)
            if reply is not None:  # the parent checks that this loop still turns
                with contextlib.suppress(OSError):
                    channel.send(reply)
                continue
            _receive(relay, data)

    running.add_reader(channel_fd, on_readable)
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, done.set)
    running.add_signal_handler(signal.SIGHUP, relay.reload)
    log.info("event=delivery_started pid=%d", os.getpid())
    with contextlib.suppress(OSError):
        channel.send(READY)  # the parent's pings start now
    await done.wait()
    running.remove_reader(channel_fd)
    await relay.stop()
    channel.close()
    log.info("event=delivery_stopped pid=%d", os.getpid())


def _receive(relay: Any, data: bytes) -> None:
    if data.startswith(HANDOVER):
        relay.store.queue.recent.add(pickle.loads(data[len(HANDOVER):]))
        return
    for mt, code in WAKE_CODES.items():
        if data == code:
            relay.wake(mt)


def _die_with_parent(parent: int) -> None:
    """On Linux, SIGKILL this process when the parent dies (``prctl(PR_SET_PDEATHSIG)``).

    A parent killed outright (OOM killer, ``kill -9``) may be restarted at once, and the new
    one's child releases this node's leases: an orphan still finishing deliveries would then
    race it and send some twice. Dying with the parent keeps one-process semantics: a
    delivery cut short is retried, as after any crash. Elsewhere the end of the channel
    still stops the orphan, after its drain."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> None:
    """``python -m helo_smtp.runtime.child CONFIG CHANNEL_FD PARENT_PID``."""
    # Until the loop's handler is in place a reload has nothing to do: this process is reading
    # the config afresh anyway. (Python's default for SIGHUP would end it.)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _die_with_parent(int(argv[3]))
    # Imported only now: until SIGHUP is ignored above, a reload would end this process.
    from helo_smtp import config as config_mod
    from helo_smtp.runtime import loop

    cfg = config_mod.load(argv[1])
    loop.setup_logging(cfg)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as serve(): EFBIG, not death
    loop.run(run_child(cfg, int(argv[2])))


if __name__ == "__main__":
    main(sys.argv)
