"""One delivery attempt: the recipients of one message at one destination domain, tried host
by host down the MX list until each is delivered, bounced or deferred (policy: outcome.py).

An attempt carries one or more *envelopes* (sender, recipients, bytes): one for a plain message,
one per recipient when the message is personalized. All envelopes use the same connection to a
host, with RSET between transactions; a ``452 4.5.3`` sends the rest in a new transaction at
once. ``Transport`` hands out connections: an idle one to the same address (checked with
RSET) or a new one within the pool's budget, with the plaintext retry after a failed
opportunistic STARTTLS.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from helo_smtp.models import BounceCategory
from helo_smtp.outbound.connections import ConnectionCache, SourceAddresses, cache_key
from helo_smtp.outbound.mx import MXResolver, Route
from helo_smtp.outbound.outcome import Action, Outcome, decide, local
from helo_smtp.outbound.pacing import ConnectionCaps
from helo_smtp.outbound.session import (
    Connection,
    SessionParams,
    TLSMode,
    TxResult,
    open_connection,
    transact,
)
from helo_smtp.outbound.slots import ClusterSlots


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    rcpts: list[tuple[int, str]]  # (recipient row id, address)
    data: bytes


@dataclass(frozen=True, slots=True)
class Settled:
    """The final word on one recipient for this attempt."""

    outcome: Outcome
    action: Action  # DELIVERED, DEFER or BOUNCE
    route: Route | None = None
    source_ip: str | None = None
    tls: bool = False


@dataclass
class Transport:
    """Connections for one pool: budget, idle reuse, source addresses, TLS contexts."""

    params: SessionParams
    contexts: dict[TLSMode, ssl.SSLContext]
    caps: ConnectionCaps
    cache: ConnectionCache
    sources: SourceAddresses
    slots: ClusterSlots | None = None  # cluster-wide per-domain connection slots

    async def checkout(self, route: Route, mode: TLSMode, domain: str = ""
                       ) -> Connection | Outcome:
        """A ready connection to ``route``: a cached one that answers RSET, or a new one
        (holding a cluster slot of ``domain``; ``slots.NoSlot`` when none is free)."""
        tag = self.slots.tag(domain) if self.slots is not None else ""
        while (conn := self.cache.take(cache_key(route.ip, mode, tag))) is not None:
            try:
                if await conn.reset(self.params.command_timeout):
                    return conn
            except asyncio.CancelledError:
                conn.close()
                raise
        source = self.sources.pick(route.ip)
        if source == SourceAddresses.SKIP:
            return local("connect", "4.4.1", "no source address of this family in the pool",
                         BounceCategory.CONNECTION)
        budget = self.caps.max_connections
        while budget and self.caps.total + self.cache.count() > budget:
            oldest = self.cache.oldest()
            if oldest is None:
                break
            oldest.close()  # over budget: the longest-idle connection makes room
        slot = await self.slots.reserve(domain) if tag and self.slots is not None else None
        try:
            got = await self._open(route, source, mode)
        except BaseException:
            if self.slots is not None:
                self.slots.free(domain, slot)
            raise
        if self.slots is not None:
            if isinstance(got, Connection):
                self.slots.bind(got, domain, slot)
            else:
                self.slots.free(domain, slot)
        return got

    async def _open(self, route: Route, source: str | None, mode: TLSMode
                    ) -> Connection | Outcome:
        conn_or_failure = await open_connection(route, source, self.params, mode, self.contexts)
        if (isinstance(conn_or_failure, Outcome) and mode == TLSMode.MAY
                and conn_or_failure.stage == "starttls"):
            # Opportunistic TLS: a failed handshake is retried in plaintext on a new
            # connection (RFC 7435 §6; Postfix's STARTTLS_HANDSHAKE_FALLBACK).
            return await open_connection(route, source, self.params, TLSMode.OFF,
                                         self.contexts)
        return conn_or_failure

    def checkin(self, conn: Connection) -> None:
        self.cache.give(conn)


class Attempt:
    """Deliver ``envelopes`` for ``domain``; ``results`` holds every recipient's verdict."""

    def __init__(self, transport: Transport, resolver: MXResolver, domain: str,
                 envelopes: list[Envelope], *, mode: TLSMode, max_addresses: int) -> None:
        self.transport = transport
        self.resolver = resolver
        self.domain = domain
        self.envelopes = envelopes
        self.mode = mode
        self.max_addresses = max(1, max_addresses)
        self.results: dict[int, Settled] = {}
        self._kept: dict[int, Settled] = {}  # transient failure at a host that was not last
        self._conn: Connection | None = None

    def _pending(self, env: Envelope) -> list[tuple[int, str]]:
        return [(rid, a) for rid, a in env.rcpts if rid not in self.results]

    def _all_pending(self) -> list[int]:
        return [rid for env in self.envelopes for rid, _ in self._pending(env)]

    async def run(self) -> dict[int, Settled]:
        mx = await self.resolver.resolve(self.domain)
        if mx.failure is not None:
            self._apply_all(mx.failure, None, last=True)
            return self.results
        routes = mx.routes(self.max_addresses)
        for i, route in enumerate(routes):
            await self._host(route, last=i == len(routes) - 1)
            if not self._all_pending():
                break
        self.abort(local("connect", "4.4.1", "no usable MX address", BounceCategory.CONNECTION))
        return self.results

    def close(self) -> None:
        """Drop the connection in use, if any (cut mid-session: its state is unknown)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def abort(self, reason: Outcome) -> None:
        """Defer whatever is still pending (deadline, or nothing left to try)."""
        self.close()
        for rid in self._all_pending():
            kept = self._kept.get(rid)
            o = reason if kept is None or reason.stage == "deadline" else kept.outcome
            route = kept.route if kept else None
            self.results[rid] = Settled(o, Action.DEFER, route,
                                        kept.source_ip if kept else None,
                                        kept.tls if kept else False)

    async def _host(self, route: Route, last: bool) -> None:
        conn: Connection | None = None
        used = False  # a transaction ran on ``conn``: RSET before the next one
        for env in self.envelopes:
            todo = self._pending(env)
            while todo:
                if conn is None or not conn.alive:
                    if conn is not None:
                        conn.close()  # dropped: its cluster slot goes back now
                    got = await self.transport.checkout(route, self.mode, self.domain)
                    if isinstance(got, Outcome):
                        self._apply_all(got, route, last)
                        return
                    conn, used = got, False
                    self._conn = conn
                elif used and not await conn.reset(self.transport.params.command_timeout):
                    continue  # stale: a new connection on the next turn
                tx = await transact(conn, env.sender, todo, env.data, self.transport.params)
                used = True
                self._apply(tx, route, conn, last)
                todo = tx.overflow
        self._conn = None
        if conn is not None:
            self.transport.checkin(conn)

    def _apply(self, tx: TxResult, route: Route, conn: Connection, last: bool) -> None:
        for rid, o in tx.outcomes.items():
            self._settle(rid, Settled(o, decide(o, last_host=last), route, conn.source_ip,
                                      conn.tls))

    def _apply_all(self, o: Outcome, route: Route | None, last: bool) -> None:
        action = decide(o, last_host=last)
        for rid in self._all_pending():
            self._settle(rid, Settled(o, action, route))

    def _settle(self, rid: int, s: Settled) -> None:
        if s.action == Action.NEXT_HOST:
            self._kept[rid] = s
        else:
            self.results[rid] = s
