"""A pool's idle connections and its source addresses.

Admission is ``pacing.ConnectionCaps``: at most ``max_connections`` deliveries of one pool at
once and ``per_domain_connections`` to one destination domain, each holding one connection at
a time. ``ConnectionCache`` keeps connections that ended cleanly for reuse by the next message
to the same address, for ``idle_connection_seconds``; before a delivery opens a new connection,
idle ones are closed until active deliveries plus idle connections fit ``max_connections``
(``Transport.checkout``), so open connections never exceed the pool's budget.
"""

from __future__ import annotations

import ipaddress
import itertools
import time

from helo_smtp.outbound.session import Connection, TLSMode

CacheKey = tuple[str, TLSMode, str]


def cache_key(ip: str, mode: TLSMode, tag: str = "") -> CacheKey:
    """Plaintext fallbacks serve the same (opportunistic) traffic as TLS connections; ``tag``
    keeps connections holding one domain's cluster slot apart (``slots.py``)."""
    return ip, (TLSMode.MAY if mode == TLSMode.OFF else mode), tag


class ConnectionCache:
    """Idle connections by (address, TLS mode), most recently used first."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._idle: dict[CacheKey, list[Connection]] = {}

    def count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def take(self, key: CacheKey) -> Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if conn.alive and time.monotonic() - conn.last_used < self.idle_seconds:
                return conn
            conn.close()
        return None

    def give(self, conn: Connection) -> None:
        if not conn.alive or self.idle_seconds <= 0:
            conn.close()
            return
        conn.last_used = time.monotonic()
        self._idle.setdefault(cache_key(conn.route.ip, conn.mode, conn.tag), []).append(conn)

    def oldest(self) -> Connection | None:
        """Remove and return the connection idle the longest (to make room)."""
        best: tuple[CacheKey, Connection] | None = None
        for key, conns in self._idle.items():
            if conns and (best is None or conns[0].last_used < best[1].last_used):
                best = key, conns[0]
        if best is None:
            return None
        self._idle[best[0]].pop(0)
        return best[1]

    def expired(self) -> list[Connection]:
        """Remove and return connections idle longer than ``idle_seconds`` or gone dead."""
        now, out = time.monotonic(), []
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                fresh = conn.alive and now - conn.last_used < self.idle_seconds
                (keep if fresh else out).append(conn)
            self._idle[key] = keep
        return out

    def drain(self) -> list[Connection]:
        out = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        return out


class SourceAddresses:
    """The pool's source IPs, round-robin per address family."""

    SKIP = "skip"  # the pool has addresses, none of this family: the route is unusable

    def __init__(self, addresses: list[str]) -> None:
        v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
        v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
        self._cycles = {4: itertools.cycle(v4) if v4 else None,
                        6: itertools.cycle(v6) if v6 else None}
        self._any = bool(addresses)

    def pick(self, remote_ip: str) -> str | None:
        """A source address for ``remote_ip``; None: let the OS choose; SKIP: unusable."""
        cycle = self._cycles[ipaddress.ip_address(remote_ip).version]
        if cycle is not None:
            return next(cycle)
        return self.SKIP if self._any else None
