"""The inbound server: every ``[[listeners]]`` entry on the relay's one event loop.

Servers are made with ``loop.create_server`` and an aiosmtpd ``SMTP`` factory (not aiosmtpd's
threaded ``Controller``, which also probes port 0 instead of binding it). Implicit TLS (465)
starts inside the admitted session with the handshake timeout, so silent handshakes count
against the caps; STARTTLS listeners upgrade inside the session
(``protocol.HeloSMTP.smtp_STARTTLS``).

Connection caps, global and per client IP, are counted here; a connection over a cap, or any
new connection once ``stop_accepting`` was called, gets its ``421`` and is closed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable

from helo_smtp.config import Config, ListenerConfig
from helo_smtp.errors import CATALOG, Reply
from helo_smtp.inbound import descriptors, tls
from helo_smtp.inbound.auth import Authenticator
from helo_smtp.inbound.authguard import AuthGuard
from helo_smtp.inbound.capacity import Capacity
from helo_smtp.inbound.directory import Directory
from helo_smtp.inbound.handler import Handler
from helo_smtp.inbound.protocol import HeloSMTP
from helo_smtp.models import MailType
from helo_smtp.ports import CommittedHook, Submission
from helo_smtp.runtime import metrics
from helo_smtp.runtime.startup import bind_error

log = logging.getLogger("helo_smtp.smtp")

DRAIN_POLL = 0.05
CLOSE_WAIT = 0.2  # seconds closed sessions get to finish before they are dropped


class InboundServer:
    """All SMTP listeners of one relay process."""

    def __init__(self, cfg: Config, submission: Submission, wake: Callable[[MailType], None],
                 committed: CommittedHook | None = None) -> None:
        self.cfg = cfg
        self.directory = Directory(submission)
        self.capacity = Capacity(submission, cfg.server)
        self.guard = AuthGuard(cfg.limits)
        self.authenticator = Authenticator(self.directory, self.guard)
        self.handler = Handler(cfg, submission, self.directory, self.capacity, wake, committed)
        self.bounce_handler: Handler | None = None  # bounces.handler.attach sets it
        self.tls_context: ssl.SSLContext | None = None
        self.sessions: set[HeloSMTP] = set()
        self.draining = False
        self._per_ip: Counter[str] = Counter()
        self._servers: list[asyncio.Server] = []
        self._monitor: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, int]:
        """Bind every listener; returns listener name (or "address:port") -> bound port."""
        self.tls_context = tls.server_context(self.cfg.tls)
        self.capacity.refresh()
        descriptors.check_reserve(self.cfg, descriptors.raise_nofile())
        loop = asyncio.get_running_loop()
        ports: dict[str, int] = {}
        bound: list[tuple[ListenerConfig, int]] = []
        try:
            for i, lc in enumerate(self.cfg.listeners):
                # Implicit TLS (465) is started by the session itself once admitted
                # (HeloSMTP.connection_made), so connections in their handshake count
                # against the caps.
                try:
                    server = await loop.create_server(
                        lambda lc=lc: HeloSMTP(self, lc), host=lc.address, port=lc.port)
                except OSError as exc:
                    name = lc.name or f"#{i + 1}"
                    key = f'[[listeners]] "{name}" (address = "{lc.address}", port = {lc.port})'
                    raise bind_error(f"listener '{name}'", key, lc.address, lc.port, exc,
                                     self.cfg.source) from None
                self._servers.append(server)
                bound.append((lc, server.sockets[0].getsockname()[1]))
                ports[lc.name or f"{lc.address}:{lc.port}"] = bound[-1][1]
        except BaseException:
            self._close_servers()
            raise
        for lc, port in bound:
            # only once every listener is bound: nothing is reported done before it is
            log.info("event=listening listener=%s address=%s port=%d tls=%s mail_type=%s",
                     lc.name or "-", lc.address, port, lc.tls, lc.mail_type)
        self._monitor = asyncio.create_task(self.capacity.run(), name="inbound-capacity")
        return ports

    # ---- connection accounting (called by HeloSMTP) ---------------------------------------
    def admit(self, session: HeloSMTP) -> Reply | None:
        """None to serve the connection, else the reply to close it with."""
        limits = self.cfg.limits
        if self.draining:
            return CATALOG["shutting_down"]
        if (len(self.sessions) >= limits.max_connections
                or self._per_ip[session.client_ip] >= limits.max_connections_per_ip):
            log.info("event=connection_refused client_ip=%s reason=too_many_connections",
                     session.client_ip)
            return CATALOG["too_many_connections"]
        self.sessions.add(session)
        self._per_ip[session.client_ip] += 1
        metrics.CONNECTIONS_ACTIVE.labels("in").inc()
        return None

    def release(self, session: HeloSMTP) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self._per_ip[session.client_ip] -= 1
        if self._per_ip[session.client_ip] <= 0:
            del self._per_ip[session.client_ip]
        metrics.CONNECTIONS_ACTIVE.labels("in").dec()

    # ---- lifecycle ------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        """New connections get ``421 4.3.2`` from now on; open sessions carry on."""
        self.draining = True

    async def drain(self, grace: float) -> None:
        """Close each session as soon as it is between transactions; after ``grace`` close the
        rest. A session is never cut while a message is being committed and answered."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            open_ = [s for s in self.sessions if not s.closing]
            if not open_:
                break
            for session in open_:
                if not session.in_transaction:
                    session.close_with(CATALOG["shutting_down"])
            await asyncio.sleep(DRAIN_POLL)
        for session in list(self.sessions):
            session.close_with(CATALOG["shutting_down"])
        self._close_servers()
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        end = loop.time() + CLOSE_WAIT  # replies flushed, TLS close_notify sent; then drop
        while self.sessions and loop.time() < end:
            await asyncio.sleep(DRAIN_POLL / 5)
        for session in list(self.sessions):
            session.abort()

    def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    def reload(self, cfg: Config) -> None:
        """SIGHUP: new limits for new connections and checks; channel/domain caches dropped.
        Listener addresses and TLS files need a restart (the daemon says so)."""
        self.cfg = cfg
        self.handler.cfg = self.handler.core.cfg = cfg
        self.guard.limits = cfg.limits
        self.capacity.server = cfg.server
        self.directory.clear()
