"""Node heartbeats: one row per running node (``nodes``), for liveness and identity.

A node (one ``helo-smtp serve``) writes its row when it starts and renews ``seen_at`` every
``lease_seconds / 3``; it is dead when ``seen_at`` is older than ``[delivery] lease_seconds``.
The same number bounds everything else a node holds in the database: its queue leases and its
connection slots are renewed as often and lapse as long after the last renewal, so when a
node's heartbeat goes stale its recipients and its slots are free too (docs/scaling.md).

``instance`` is a random token per process: a node that finds another token in its row on a
renewal has lost its name to another process (``beat`` returns False). ``place`` says where
the process runs (host, boot and PID namespace, ``runtime/node.py``), so a restart on the
same machine can tell that the previous holder of its name is gone without waiting for the
lease.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_COLUMNS = "node_id, instance, host, place, pid, started_at, seen_at"


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    instance: str
    host: str
    place: str
    pid: int
    started_at: float
    seen_at: float


def _row(r: Any) -> NodeRow:
    return NodeRow(r[0], r[1], r[2], r[3], int(r[4]), float(r[5]), float(r[6]))


def join_in(c: sqlite3.Connection, me: NodeRow, lease: float,
            may_replace: Callable[[NodeRow], bool]) -> NodeRow | None:
    """Write ``me`` as the holder of its name; None when done, else the live row in the way.

    A row whose heartbeat is older than ``lease`` is replaced, and so is a live one for which
    ``may_replace`` says its process is gone. The replacement names the instance it replaces,
    so of two starts racing for one name exactly one wins."""
    for _ in range(2):
        found = c.execute(f"SELECT {_COLUMNS} FROM nodes WHERE node_id = ?",
                          (me.node_id,)).fetchone()
        if found is None:
            if c.execute(f"INSERT INTO nodes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                         " ON CONFLICT (node_id) DO NOTHING", (
                             me.node_id, me.instance, me.host, me.place, me.pid,
                             me.started_at, me.seen_at)).rowcount:
                return None
            continue  # another start inserted it meanwhile: look at it
        old = _row(found)
        if old.seen_at > me.seen_at - lease and not may_replace(old):
            return old
        if c.execute("UPDATE nodes SET instance = ?, host = ?, place = ?, pid = ?,"
                     " started_at = ?, seen_at = ? WHERE node_id = ? AND instance = ?", (
                         me.instance, me.host, me.place, me.pid, me.started_at, me.seen_at,
                         me.node_id, old.instance)).rowcount:
            return None
    found = c.execute(f"SELECT {_COLUMNS} FROM nodes WHERE node_id = ?",
                      (me.node_id,)).fetchone()
    return _row(found) if found is not None else None


class Nodes:
    """The heartbeat rows. ``join`` at start, ``beat`` every lease/3, ``leave`` at stop."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def join(self, me: NodeRow, lease: float,
             may_replace: Callable[[NodeRow], bool] = lambda row: False) -> NodeRow | None:
        """Claim ``me.node_id``; None when it is ours now, else the live holder's row."""
        return self.db.write(lambda c: join_in(c, me, lease, may_replace))

    async def beat(self, node_id: str, instance: str, now: float | None = None) -> bool:
        """Renew our heartbeat; False when the name is no longer ours (another process)."""
        t = time.time() if now is None else now
        return bool(await self.db.awrite(lambda c: c.execute(
            "UPDATE nodes SET seen_at = ? WHERE node_id = ? AND instance = ?",
            (t, node_id, instance)).rowcount))

    def leave(self, node_id: str, instance: str) -> None:
        """A clean stop: the name is free at once."""
        self.db.write(lambda c: c.execute(
            "DELETE FROM nodes WHERE node_id = ? AND instance = ?", (node_id, instance)))

    def live(self, lease: float, now: float | None = None) -> list[NodeRow]:
        """Nodes whose heartbeat is younger than ``lease``, by name."""
        t = time.time() if now is None else now
        return [_row(r) for r in self.db.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM nodes WHERE seen_at > ? ORDER BY node_id",
            (t - lease,)).fetchall())]
