"""The delivery process: ``helo-smtp serve`` delivers from a child process of its own.

Why: a Python process runs Python on one core at a time (the GIL). In one process, taking
mail in (TLS, SMTP parsing, the rules, the commit) and sending it out (MX sessions, DKIM
signing, recording outcomes) share that one core; in the benchmarks the relay sat at 100 % of a
core while the machine's second core idled. Split, the listeners keep the parent's core and
the two delivery workers get another (``server.delivery_process``, on by default).

The two processes share only the store (SQLite in WAL mode takes writers from several
processes, as it does for the CLI; PostgreSQL nodes already share it) and three small things:

* **A channel** (a ``SOCK_SEQPACKET`` socket pair: whole messages, and end of file when the
  other side is gone). Per enqueue the parent sends the message just committed (pickled; at
  most ``HANDOVER_BYTES``), which the child keeps in its ``store/recent.py`` cache so the first
  delivery need not read it back from SQLite, then one byte (``t`` transactional,
  ``b`` broadcast) that wakes the worker, so new mail is claimed at once, not at the next poll.
  Nothing on it is needed for correctness: a full channel drops what does not fit (the child
  reads the store, and has wake-ups pending already). End of file means the parent is gone,
  and the child drains and exits.
* **Signals.** SIGHUP reaches the child through the parent; SIGTERM from systemd reaches both
  (the whole cgroup), and each drains its side.
* **Metrics.** Both processes record into prometheus-client's multiprocess directory
  (``share_metrics``); the parent's ``/metrics`` adds them up.

The parent restarts a child that dies (one line ``event=delivery_process_exited``, then a
back-off of 1 s doubling to 30 s); leases and connection slots the dead child held go back at
once (``on_exit``) and again when the new one starts (``Relay.start``). A child that stops
answering the parent's pings on the channel is killed and restarted the same way
(``runtime/childwatch.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from helo_smtp.models import MailType, StoredMessage
from helo_smtp.runtime.childwatch import ChildWatch, ping_timeout

log = logging.getLogger("helo_smtp.daemon")

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when first imported
WAKE_CODES = {MailType.TRANSACTIONAL: b"t", MailType.BROADCAST: b"b"}
HANDOVER = b"m"  # then a pickled StoredMessage (parent to its own child: trusted bytes)
HANDOVER_BYTES = 64 * 1024  # larger messages the child reads from the store
CHANNEL_BUFFER = 4 << 20  # bytes in flight before hand-overs are dropped
RECV_BYTES = HANDOVER_BYTES + 16 * 1024  # a hand-over's pickle: raw plus the other fields
RESTART_MIN, RESTART_MAX = 1.0, 30.0


def share_metrics() -> str | None:
    """Point prometheus-client at a fresh multiprocess directory that the child inherits.

    Must run before prometheus-client is imported (``helo_smtp.metrics`` does), since it
    chooses where values live then; returns the directory, or None if that is too late."""
    if "prometheus_client" in sys.modules:
        log.warning("event=metrics_not_shared msg=prometheus_client already imported; the "
                    "delivery process's metrics will be missing from /metrics")
        return None
    path = tempfile.mkdtemp(prefix="helo-smtp-metrics-")
    os.environ[METRICS_ENV] = path
    return path


def drop_metrics(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class DeliveryProcess:
    """The parent's handle on the delivery child: start, wake, hand over, reload, stop,
    restart."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ours.setblocking(False)
        self._ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BUFFER)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._watch = ChildWatch(self._send, self._kill_unresponsive, ping_timeout())
        self._unresponsive = False
        self.on_exit: Callable[[], None] = lambda: None  # give the dead child's leases back

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._ours.fileno(), self._read)
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name="delivery-process")

    def _read(self) -> None:
        """Datagrams from the child: answers to our pings."""
        while True:
            try:
                data = self._ours.recv(64)
            except (BlockingIOError, ConnectionError, OSError):
                return
            if not data:
                return
            self._watch.answer(data)

    def _kill_unresponsive(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._unresponsive = True
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _spawn(self) -> None:
        fd = self._theirs.fileno()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "helo_smtp.runtime.child", str(self.cfg.source), str(fd),
            str(os.getpid()), pass_fds=(fd,))
        log.info("event=delivery_process_started pid=%d", self._proc.pid)

    async def _supervise(self) -> None:
        from helo_smtp.runtime import metrics

        delay = RESTART_MIN
        while True:
            assert self._proc is not None
            self._watch.restarted()
            watch = asyncio.create_task(self._watch.run(), name="delivery-process-ping")
            code = await self._proc.wait()
            watch.cancel()
            _forget_metrics(self._proc.pid)
            if self._stopping:
                return
            reason = "unresponsive" if self._unresponsive else "exited"
            self._unresponsive = False
            metrics.DELIVERY_PROCESS_RESTARTS.labels(reason).inc()
            log.error("event=delivery_process_exited pid=%d code=%s reason=%s restart_in=%.0fs",
                      self._proc.pid, code, reason, delay)
            try:
                await asyncio.to_thread(self.on_exit)
            except Exception:  # the new child releases them too
                log.exception("event=lease_release_failed")
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn()
            delay = min(delay * 2, RESTART_MAX)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, ConnectionError, OSError):
            self._ours.send(data)

    def wake(self, mail_type: MailType) -> None:
        """Tell the child there is new work of this type (never blocks)."""
        self._send(WAKE_CODES[mail_type])

    def hand_over(self, msg: StoredMessage) -> None:
        """Give the child a message just committed, for its first delivery (best effort)."""
        if len(msg.raw) <= HANDOVER_BYTES:
            self._send(HANDOVER + pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))

    def reload(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGHUP)

    async def stop(self, grace: float) -> None:
        """SIGTERM the child and wait while it drains; SIGKILL it if it outlasts the grace."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace + 10)
            except TimeoutError:
                log.error("event=delivery_process_killed pid=%d", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._ours.fileno())
        self._ours.close()
        self._theirs.close()


def _forget_metrics(pid: int) -> None:
    """A dead process's live gauges (open connections) stop counting (prometheus-client)."""
    if os.environ.get(METRICS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
