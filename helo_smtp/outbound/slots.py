"""Cluster connection slots: one per open connection to a destination, idle or not.

With several nodes on one PostgreSQL, ``[pools.*] per_domain_connections`` caps the connections
the whole cluster has open to one destination domain (``store/throttle.py``: numbered slots per
(pool, domain) in ``connection_slots``). A slot is taken when a connection is *opened*
(``Transport.checkout``) and given back when that connection *closes*, so a connection waiting
in the idle cache (``idle_connection_seconds``) still holds its slot, and the destination never
sees more open connections than the cap, whichever node opened them. Idle connections are
kept per destination domain while slots are in use (``Connection.tag``), so a connection that
holds one domain's slot never carries another domain's mail.

When every slot is held, ``reserve`` raises ``NoSlot``: the delivery gives its rows back for a
moment (``worker.CLUSTER_BUSY_DELAY``), without an attempt counted, and any node may take them.

Leases: a slot is leased for ``[delivery] lease_seconds`` and renewed with the worker's queue
leases (``renew``, every lease/3), so a node that dies with connections open frees its slots
when its heartbeat and its leases lapse, ``lease_seconds`` after its last renewal
(``store/nodes.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from helo_smtp.outbound.session import Connection

log = logging.getLogger("helo_smtp.delivery")

LOOK_AGAIN = 0.25  # seconds an answer of ``all_elsewhere`` is reused (one read per domain)


class NoSlot(Exception):
    """Every cluster connection slot of the destination is held by an open connection."""


class ClusterSlots:
    """The slots one pool's connections hold on this node."""

    def __init__(self, throttle: Any, pool: str, node: str, cap: Callable[[str], int],
                 lease: Callable[[], float]) -> None:
        self.throttle = throttle
        self.pool = pool
        self.node = node
        self.cap = cap  # the cluster-wide cap of a domain (0: none, or not shared)
        self.lease = lease
        self._held: dict[Connection, tuple[str, int]] = {}
        self._elsewhere: dict[str, tuple[float, bool]] = {}  # domain -> (when, all held)

    def tag(self, domain: str) -> str:
        """The idle-cache partition of connections to ``domain`` ("" when uncapped)."""
        return domain.lower() if self.cap(domain) > 0 else ""

    async def reserve(self, domain: str) -> int | None:
        """A slot for a new connection to ``domain`` (None: no cap); NoSlot when all are held."""
        cap = self.cap(domain)
        if cap <= 0:
            return None
        slot = await self.throttle.acquire_slot(self.pool, domain, cap, self.node, self.lease())
        if slot is None:
            raise NoSlot(domain)
        return int(slot)

    async def all_elsewhere(self, domain: str) -> bool:
        """Other nodes hold every slot of ``domain``: a delivery here could not open a
        connection, so it should not take the shared tokens either."""
        cap = self.cap(domain)
        if cap <= 0:
            return False
        now = time.monotonic()
        seen = self._elsewhere.get(domain)
        if seen is None or now - seen[0] > LOOK_AGAIN:
            held = await asyncio.to_thread(self.throttle.held_by_others, self.pool, domain,
                                           self.node)
            if len(self._elsewhere) > 10_000:
                self._elsewhere.clear()
            seen = self._elsewhere[domain] = (now, held >= cap)
        return seen[1]

    def bind(self, conn: Connection, domain: str, slot: int | None) -> None:
        """``conn`` holds ``slot`` until it closes."""
        if slot is None:
            return
        self._held[conn] = (domain, slot)
        conn.tag = domain.lower()
        conn.on_close = lambda: self._closed(conn)

    def free(self, domain: str, slot: int | None) -> None:
        """A reserved slot that no connection took (the connect failed)."""
        if slot is not None:
            self._give_back(domain, slot)

    def _closed(self, conn: Connection) -> None:
        held = self._held.pop(conn, None)
        if held is not None:
            self._give_back(*held)

    def _give_back(self, domain: str, slot: int) -> None:
        with contextlib.suppress(Exception):  # store closed: the lease lapses instead
            self.throttle.release_slot_later(self.pool, domain, slot, self.node)

    def held(self) -> int:
        return len(self._held)

    def sweep(self) -> None:
        """Close connections the peer or the library dropped: their slots go back."""
        for conn in [c for c in self._held if not c.alive]:
            conn.close()

    async def renew(self) -> None:
        """Extend the lease of every slot an open connection holds (with the queue leases)."""
        slots = list(self._held.values())
        if not slots:
            return
        try:
            await self.throttle.renew_slots(self.pool, slots, self.node, self.lease())
        except Exception:
            log.exception("event=slot_renewal_failed count=%d", len(slots))
