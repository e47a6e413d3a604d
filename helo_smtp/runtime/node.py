"""This process's hold on its node: the name in leases, and on SQLite the database file.

``NodeClaim.take`` runs first thing at ``serve`` start, before a lease is freed:

* **SQLite**: an exclusive ``flock`` on ``<database>.lock``, held until the process ends (the
  kernel drops it when the process dies, however it dies). A second ``serve`` on the same
  file refuses with one line instead of running beside the first.
* **Both backends**: the heartbeat row (``store/nodes.py``). A start whose ``node_id`` has a
  live heartbeat refuses with one line, since it would free the other process's leases and
  deliver its recipients again. Unless that process is gone: same host, same boot, same PID
  namespace and its PID no longer a helo-smtp process (a restart after a crash or a
  ``kill -9`` is not held up for the lease). On SQLite the file lock already proves it.

``run()`` renews the heartbeat every ``lease_seconds / 3`` until cancelled; a renewal that
finds another process's token in the row means the name was taken over (this process stalled
for longer than the lease): it logs ``event=node_identity_lost`` and calls ``on_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from helo_smtp.errors import UsageError
from helo_smtp.store.nodes import NodeRow
from helo_smtp.store.pg_schema import is_postgres_url

if TYPE_CHECKING:
    from helo_smtp.store import Store

log = logging.getLogger("helo_smtp.daemon")


class NodeInUse(UsageError):
    """Another live process holds this node's name (or this SQLite file)."""


def place() -> str:
    """Where this process runs: host, boot and PID namespace (PIDs compare only inside it)."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    pidns = ""
    with contextlib.suppress(OSError):
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    return f"{socket.gethostname()}/{boot}/{pidns}"


def _is_relay(pid: int) -> bool:
    """``pid`` is a running helo-smtp process (a reused PID of another program is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: assume the worst
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: the PID exists, that is all we know
    return b"helo" in cmd


def lock_path(database: str) -> Path:
    return Path(f"{database}.lock")


def lock_database(database: str) -> IO[bytes] | None:
    """The exclusive lock of a SQLite database, held while the returned file stays open."""
    if is_postgres_url(database) or database == ":memory:":
        return None
    path = lock_path(database)
    f = path.open("ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise NodeInUse(f"{database} is in use by another 'helo-smtp serve' (lock {path} is "
                        "held); stop it first, or give this one its own database") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n".encode())
    f.flush()
    return f


class NodeClaim:
    """Hold ``node_id`` for this process's life (see the module text)."""

    def __init__(self, store: Store, node_id: str, lease: float) -> None:
        self.store = store
        self.node_id = node_id
        self.lease = lease
        self.instance = uuid.uuid4().hex
        self.lock: IO[bytes] | None = None
        self.exclusive = True

    def take(self, exclusive: bool = True) -> None:
        """Claim the name; NodeInUse (one line) when a live process holds it.

        ``exclusive=False`` (relays inside the tests' own process): write the heartbeat
        whatever holds the name, and take no file lock."""
        self.exclusive = exclusive
        if exclusive:
            self.lock = lock_database(self.store.db.path)
        now = time.time()
        here = place()
        me = NodeRow(self.node_id, self.instance, socket.gethostname(), here, os.getpid(),
                     now, now)

        def gone(row: NodeRow) -> bool:
            if not exclusive or self.lock is not None:
                return True  # SQLite: the file lock says no one else serves this database
            return row.place == here and not _is_relay(row.pid)

        other = self.store.nodes.join(me, self.lease, gone)
        if other is not None:
            age = max(0.0, now - other.seen_at)
            self.release()
            raise NodeInUse(
                f"node_id '{self.node_id}' is in use by a live node (pid {other.pid} on "
                f"{other.host}, heartbeat {age:.0f}s ago); give this node its own "
                f"[server] node_id, or stop the other (its heartbeat lapses "
                f"{self.lease:.0f}s after it stops)")

    async def run(self, on_lost: Callable[[], None]) -> None:
        """Renew the heartbeat every lease/3 until cancelled."""
        period = max(0.05, self.lease / 3)
        while True:
            await asyncio.sleep(period)
            try:
                ours = await self.store.nodes.beat(self.node_id, self.instance)
            except Exception as exc:  # noqa: BLE001 - a missed beat only ages the row
                log.error("event=heartbeat_failed node=%s error=%s", self.node_id,
                          type(exc).__name__)
                continue
            if not ours and self.exclusive:
                log.error("event=node_identity_lost node=%s msg=another process took this "
                          "node_id; stopping", self.node_id)
                on_lost()
                return

    def leave(self) -> None:
        """A clean stop: the name is free for the next start at once."""
        with contextlib.suppress(Exception):
            self.store.nodes.leave(self.node_id, self.instance)
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def give_back(store: Store, node_id: str) -> None:
    """The node's delivery process is gone: its queue leases and connection slots are free."""
    released = store.queue.release_node(node_id)
    store.throttle.release_holder(node_id)
    if released:
        log.info("event=leases_released count=%d node=%s", released, node_id)
