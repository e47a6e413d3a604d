"""One inbound SMTP connection: aiosmtpd 1.4.6's ``SMTP`` with Helo's session rules.

What this subclass changes, and why:

- every outgoing line passes ``replies.translate`` (enhanced codes, catalog texts only) and any
  ``421`` closes the connection (RFC 5321 §3.8);
- connection caps, drain and the session lifetime are enforced here; the idle timer is reset
  by any bytes from the client (aiosmtpd only resets it per command, which would cut a slow
  but live DATA upload) and answers ``421 4.4.2`` instead of closing silently;
- EHLO/HELO validate their argument (aiosmtpd passes control characters through) and
  advertise exactly SPEC §5's extensions; AUTH only once TLS is up, on 465 by our own check
  (aiosmtpd's ``auth_require_tls`` only knows STARTTLS);
- STARTTLS gets a handshake timeout and is refused once TLS is active; the plaintext read
  buffer is discarded by aiosmtpd 1.4.6 after the handshake (no command injection);
- AUTH PLAIN / LOGIN decode without logging client data; the check itself is ``auth.py``;
- MAIL/RCPT paths are parsed by ``addresses.parse_path`` (no RFC 5322 comments or quoting);
- DATA content is read by ``dataread`` (in chunks, any line ends, only <CRLF>.<CRLF> ends it).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import collections
import logging
import ssl
from typing import Any, Protocol

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from helo_smtp.config import Config, ListenerConfig
from helo_smtp.errors import CATALOG, MessageTooLarge, Reply
from helo_smtp.inbound import addresses, auth, dataread, replies
from helo_smtp.inbound.message import Trace
from helo_smtp.inbound.sasl import SaslMechanisms
from helo_smtp.runtime import metrics

log = logging.getLogger("helo_smtp.smtp")

# RFC 5321 §4.5.3.1.4: 512 octets, plus what SIZE= (RFC 1870) and SMTPUTF8 (RFC 6531) add.
MAIL_LINE_LIMIT = 512 + 26 + 10
# How long a closing TLS session waits for the client's close_notify (asyncio's default: 30 s,
# during which the connection still counts against the caps).
TLS_SHUTDOWN_TIMEOUT = 5.0


class HeloSession(Session):
    login_data = None  # a plain attribute: aiosmtpd's property logs a warning on every AUTH


class HeloEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.account: Any = None
        self.sender_domain = ""
        self.channel_id: str | None = None
        self.mail_type: str | None = None
        self.message_id: str | None = None


class Doors(Protocol):
    """What a session needs from the server that accepted it (``listener.InboundServer``)."""

    cfg: Config
    tls_context: ssl.SSLContext | None
    handler: Any  # aiosmtpd's handler object (``handler.Handler``)
    bounce_handler: Any  # the same for a mail_type = "bounces" listener (bounces/handler.py)
    guard: auth.AuthGuard
    authenticator: auth.Authenticator

    def admit(self, session: HeloSMTP) -> Reply | None: ...

    def release(self, session: HeloSMTP) -> None: ...


class HeloSMTP(SaslMechanisms, SMTP):
    def __init__(self, inbound: Doors, listener: ListenerConfig) -> None:
        cfg = inbound.cfg
        self.inbound = inbound
        self.listener = listener
        self.listener_name = listener.name or f"{listener.address}:{listener.port}"
        self.client_ip = "0.0.0.0"
        self.auth_failures = 0
        self.busy = False  # committing a message: no timer or drain may cut the session
        self._command: str | None = None
        self._admitted = self._refused = self._lost = False
        self._lifetime: asyncio.TimerHandle | None = None
        # aiosmtpd keeps this dict on the class, shared by every connection: make it ours.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        starttls = inbound.tls_context if listener.tls == "starttls" else None
        super().__init__(
            inbound.bounce_handler if listener.mail_type == "bounces" else inbound.handler,
            data_size_limit=cfg.limits.max_message_size, enable_SMTPUTF8=True,
            decode_data=False, hostname=cfg.server.hostname, ident="ESMTP",
            tls_context=starttls, timeout=cfg.limits.idle_timeout, auth_require_tls=False,
            command_call_limit={"*": cfg.limits.command_call_limit},
            loop=asyncio.get_running_loop())
        self._lifetime_seconds = cfg.limits.session_lifetime
        self._handshake_timeout = cfg.tls.handshake_timeout
        self._smtp_methods = {name: self._tracked(name, method)
                              for name, method in self._smtp_methods.items()}

    def _create_session(self) -> Session:
        return HeloSession(self.loop)

    def _create_envelope(self) -> Envelope:
        return HeloEnvelope()

    def _tracked(self, name: str, method: Any) -> Any:
        """Remember which command is being answered (replies depend on it)."""
        async def run(arg: str | None) -> None:
            self._command = name
            try:
                await method(arg)
            finally:
                self._command = None
        return run

    # ---- connection life ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and not self._admitted:  # not the STARTTLS re-entry
            peer = transport.get_extra_info("peername")
            self.client_ip = str(peer[0]) if peer else "0.0.0.0"
            refusal = self.inbound.admit(self)
            if refusal is not None:
                self._refused = True
                if self.listener.tls != "implicit":  # no plaintext line into a TLS port
                    transport.write(f"{refusal.line()}\r\n".encode())  # type: ignore[attr-defined]
                transport.close()
                return
            self._admitted = True
            if self._lifetime_seconds > 0:  # 0: no limit
                self._lifetime = self.loop.call_later(self._lifetime_seconds, self._end_of_life)
            if self.listener.tls == "implicit" and self.inbound.tls_context is not None:
                # 465: the handshake runs in the admitted session: silent ones meet the caps.
                self._original_transport = transport  # type: ignore[assignment]
                waiter = self._wrap_tls(transport, self.inbound.tls_context)
                waiter.add_done_callback(self._implicit_handshake_done)
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused or self._lost:
            return
        self._lost = True
        if self._admitted:
            self._admitted = False
            self.inbound.release(self)
            if self._lifetime is not None:
                self._lifetime.cancel()
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._reset_timeout()  # idle means no bytes at all, also inside DATA
        super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        super().eof_received()  # cancels the session task, feeds EOF to the reader
        # Close now, never half-open: aiosmtpd leaves the close to the task it just cancelled,
        # and when EOF came before that task's first step (uvloop: a TCP health check) the
        # transport stayed open and its slots taken until the idle timeout.
        return False

    def _timeout_cb(self) -> None:
        if self.busy:
            self._reset_timeout(1.0)
            return
        self.close_with(CATALOG["timeout"])

    def _end_of_life(self) -> None:
        if self.busy:
            self._lifetime = self.loop.call_later(1.0, self._end_of_life)
            return
        self.close_with(CATALOG["timeout"])

    @property
    def in_transaction(self) -> bool:
        return self.busy or (self.envelope is not None and self.envelope.mail_from is not None)

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close_with(self, reply: Reply) -> None:
        """Write a closing reply straight to the transport and close it (after a TLS
        close_notify, which the client may never answer: see ``abort``)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(f"{reply.line()}\r\n".encode())  # type: ignore[attr-defined]
        transport.close()

    def abort(self) -> None:
        """Drop the connection now, without waiting for the client."""
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]

    # ---- replies --------------------------------------------------------------------------
    async def push(self, status: Any) -> None:
        if isinstance(status, bytes):  # AUTH challenges (334)
            await super().push(status)
            return
        line = replies.translate(status, self._command)
        await super().push(line)
        self._count(line)
        if line.startswith("421") and self.transport is not None:
            self.transport.close()

    def _count(self, line: str) -> None:
        """A refused MAIL or DATA ends the transaction: count it (a refused RCPT does not)."""
        if self._command not in ("MAIL", "DATA") or line[:1] not in ("4", "5"):
            return
        reason = replies.reason_of(line)
        metrics.MESSAGES_REJECTED.labels(line[:3], reason).inc()
        if self._command == "DATA" and reason in ("message_too_large", "line_too_long",
                                                  "no_valid_recipients"):
            log.info("event=smtp_transaction message_id=- channel=- mail_type=- client_ip=%s "
                     "listener=%s code=%s status=%s reason=%s", self.client_ip,
                     self.listener_name, line[:3], line[4:9], reason)

    async def check_auth_needed(self, caller_method: str) -> bool:
        assert self.session is not None
        if self.session.authenticated or self.listener.mail_type == "bounces":
            return False  # the bounces listener takes mail without AUTH (SPEC §13)
        await self.push(CATALOG["auth_required"].line())
        return True

    # ---- TLS ------------------------------------------------------------------------------
    @property
    def tls_active(self) -> bool:
        t = self.transport
        return t is not None and t.get_extra_info("ssl_object") is not None

    def trace(self, smtputf8: bool) -> Trace:
        """What the Received line needs about this session."""
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        cipher = ssl_object.cipher() if ssl_object is not None else None
        assert self.session is not None
        return Trace(self.session.host_name or "unknown", self.client_ip,
                     self.hostname, smtputf8, ssl_object.version() if ssl_object else None,
                     cipher[0] if cipher else None)

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self.push(CATALOG["bad_syntax"].line())
            return
        if self.tls_active:
            await self.push(CATALOG["bad_sequence"].line())
            return
        if not self.tls_context:
            await self.push(CATALOG["tls_not_available"].line())
            return
        await self.push(CATALOG["tls_ready"].line())
        self._original_transport = self.transport
        assert self._original_transport is not None
        waiter = self._wrap_tls(self._original_transport, self.tls_context)
        self.transport = self._tls_protocol._app_transport
        try:
            await waiter
        except OSError as exc:  # SSLError, handshake timeout (ConnectionAbortedError), reset
            log.info("event=tls_failed client_ip=%s error=%s", self.client_ip,
                     type(exc).__name__)
            # The SSL layer tells its app protocol about the lost connection only after a
            # completed handshake: end the session here (as aiosmtpd does for this case).
            self._original_transport.close()
            self.connection_lost(exc)

    def _wrap_tls(self, raw: asyncio.BaseTransport, context: Any) -> asyncio.Future[None]:
        """Run a server-side TLS handshake on ``raw``; the SSL layer calls
        ``connection_made`` again with the TLS transport once it is done."""
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True,
            ssl_handshake_timeout=self._handshake_timeout,
            ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT)
        raw.set_protocol(self._tls_protocol)
        self._tls_protocol.connection_made(raw)
        return waiter

    def _implicit_handshake_done(self, waiter: asyncio.Future[None]) -> None:
        """A failed 465 handshake never reaches connection_made/lost: release here."""
        exc = None if waiter.cancelled() else waiter.exception()
        if exc is None and not waiter.cancelled():
            return
        log.info("event=tls_failed client_ip=%s error=%s", self.client_ip,
                 type(exc).__name__ if exc else "cancelled")
        if self._original_transport is not None:
            self._original_transport.close()
        if self._admitted and not self._lost:
            self._lost = True
            self._admitted = False
            self.inbound.release(self)
            if self._lifetime is not None:
                self._lifetime.cancel()

    # ---- greeting -------------------------------------------------------------------------
    async def smtp_EHLO(self, arg: str | None) -> None:
        if not arg or not addresses.valid_helo(arg):
            await self.push(CATALOG["bad_helo"].line())
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = arg
        self.command_size_limits["MAIL"] = MAIL_LINE_LIMIT
        lines = [self.hostname, "PIPELINING", f"SIZE {self.data_size_limit}", "8BITMIME",
                 "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.tls_context and not self.tls_active:
            lines.append("STARTTLS")
        if self.tls_active:
            lines.append("AUTH PLAIN LOGIN")
        last = len(lines) - 1
        await self.push("\r\n".join(f"250{' ' if i == last else '-'}{text}"
                                    for i, text in enumerate(lines)))

    async def smtp_HELO(self, arg: str | None) -> None:
        if not arg or not addresses.valid_helo(arg):
            await self.push(CATALOG["bad_helo"].line())
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = False
        self.session.host_name = arg
        await self.push(f"250 {self.hostname}")

    async def smtp_VRFY(self, arg: str | None) -> None:
        await self.push(CATALOG["vrfy_disabled"].line())

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self.push(CATALOG["not_implemented"].line())

    async def smtp_HELP(self, arg: str | None) -> None:
        await self.push(CATALOG["not_implemented"].line())

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if self._command == "MAIL" and self.listener.mail_type == "bounces" and \
                arg.startswith("<>"):  # DSNs come from the null sender (RFC 5321 §4.5.5);
            return "<>", arg[2:].strip()  # "<>" itself, since aiosmtpd refuses an empty one
        parsed = addresses.parse_path(arg)
        return parsed if parsed is not None else (None, None)

    # ---- DATA -----------------------------------------------------------------------------
    async def smtp_DATA(self, arg: str | None) -> None:
        """aiosmtpd's checks and DATA hook around ``dataread.read`` (its own loop reads the
        content line by line and refuses a long bare-LF message as one over-long line)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos or arg:
            name = "bad_syntax" if self.envelope.rcpt_tos else "no_valid_recipients"
            await self.push(CATALOG[name].line())
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await dataread.read(self._reader, self.data_size_limit)
        except MessageTooLarge as exc:
            self._set_post_data_state()
            await self.push(exc.line())
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(CATALOG["ok"].line() if status is MISSING else status)

    # ---- AUTH -----------------------------------------------------------------------------
    async def smtp_AUTH(self, arg: str | None) -> None:
        assert self.session is not None
        if arg:  # "AUTH login": mechanism names match in any case, as in Postfix and Exim
            mechanism, space, rest = arg.lstrip().partition(" ")
            arg = mechanism.upper() + space + rest
        if self.session.host_name and self.session.extended_smtp and not self.tls_active:
            metrics.AUTH_FAILURES.labels("no_tls").inc()
            await self.push(CATALOG["encryption_required"].line())
            return
        if self.session.host_name and self.inbound.guard.ip_locked(self.client_ip):
            metrics.AUTH_FAILURES.labels("locked").inc()
            await self.push(CATALOG["auth_locked"].line())
            return
        await super().smtp_AUTH(arg)  # HELO/EHLO order, mechanism, then auth_PLAIN/LOGIN
