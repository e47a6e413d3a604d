"""Scriptable receiving MTAs ("sinks") for tests, built on aiosmtpd 1.4.6.

ca = trustme.CA()
sink = Sink("127.0.0.10", 2525, name="mx1.example.test", ca=ca).start()
sink.h.rcpt_replies["bad@example.test"] = "550 5.1.1 No such user"
sink.h.rcpt_replies["busy@example.test"] = "452 4.2.2 Mailbox full"
sink.h.drop_at = "RCPT"          # close TCP when RCPT arrives
sink.h.stall = {"DATA": 30}      # tarpit: sleep before answering DATA
sink.h.banner_delay = 30         # tarpit: sleep before the 220 greeting
sink.h.on_connect = "drop"       # close right after accept / "554" = reject banner
sink.h.ehlo_reply = "502 5.5.1 EHLO not implemented"  # an old MTA: only HELO works
... sink.h.messages[-1]["peer"], ["rcpt_tos"], ["tls"], ["data"]
sink.h.open, sink.h.peak_open       # connections open now / at most at once
sink.h.peak_by_ip["127.0.0.6"]      # the same, per client address
sink.h.reset(); sink.stop()
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class ScriptedHandler:
    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self):
        self.messages: list[dict] = []
        self.connections: list[tuple] = []  # session.peer of every accepted conn
        self.commands: list[tuple] = []  # (peer, VERB, arg)
        self.rcpt_replies: dict = {}  # addr(lower) -> "5xx ..." or callable
        self.mail_reply: str | None = None  # reply to every MAIL FROM
        self.data_reply: str | None = None  # reply after DATA content (e.g. "451 4.3.0 try later")
        self.drop_at: str | None = None  # "EHLO"|"MAIL"|"RCPT"|"DATA" -> close connection
        self.stall: dict[str, float] = {}  # VERB -> seconds to sleep before replying
        self.banner_delay: float = 0.0
        self.on_connect: str | None = None  # None | "drop" | "554"
        self.ehlo_reply: str | None = None  # answer EHLO with this instead (HELO still works)
        self.open = 0  # connections open right now
        self.peak_open = 0  # the most open at once
        self.open_by_ip: Counter[str] = Counter()
        self.peak_by_ip: Counter[str] = Counter()

    def opened(self, ip: str) -> None:
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        self.open_by_ip[ip] += 1
        self.peak_by_ip[ip] = max(self.peak_by_ip[ip], self.open_by_ip[ip])

    def closed(self, ip: str) -> None:
        # max(0, ...): a connection opened before reset() may close after it
        self.open = max(0, self.open - 1)
        self.open_by_ip[ip] = max(0, self.open_by_ip[ip] - 1)

    async def _script(self, server, verb: str, arg):
        self.commands.append((server.session.peer, verb, arg))
        if verb in self.stall:
            await asyncio.sleep(self.stall[verb])
        if self.drop_at == verb:
            server.transport.close()
            return True
        return False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if await self._script(server, "EHLO", hostname):
            return []
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        if await self._script(server, "HELO", hostname):
            return "421 4.4.2 dropped"
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if await self._script(server, "MAIL", address):
            return "421 4.4.2 dropped"
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if await self._script(server, "RCPT", address):
            return "421 4.4.2 dropped"
        rule = self.rcpt_replies.get(address.lower())
        if callable(rule):
            rule = rule(address, session)
        if rule:
            return rule
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if await self._script(server, "DATA", None):
            return "421 4.4.2 dropped"
        if self.data_reply:
            return self.data_reply
        self.messages.append(
            {
                "peer": session.peer,
                "ehlo": session.host_name,
                "tls": session.ssl is not None,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "data": envelope.content,
                "t": time.time(),
                "sink": self.name,
            }
        )
        return "250 2.0.0 Ok: queued"


class ScriptedSMTP(SMTP):
    def connection_made(self, transport):
        super().connection_made(transport)
        if not hasattr(self, "_counted_ip"):  # called again after STARTTLS (RFC 3207 §4.2)
            self._counted_ip = (transport.get_extra_info("peername") or ("?",))[0]
            self._counted = True
            self.event_handler.opened(self._counted_ip)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        if getattr(self, "_counted", False):
            self._counted = False
            self.event_handler.closed(self._counted_ip)

    async def smtp_EHLO(self, hostname: str):
        reply = self.event_handler.ehlo_reply
        if reply is None:
            return await super().smtp_EHLO(hostname)
        self.event_handler.commands.append((self.session.peer, "EHLO", hostname))
        await self.push(reply)
        return None

    async def _handle_client(self):
        h = self.event_handler
        h.connections.append(self.session.peer)
        if h.on_connect == "drop":
            self.transport.close()
            return
        if h.on_connect == "554":
            await self.push("554 5.7.1 No SMTP service here")
            self.transport.close()
            return
        if h.banner_delay:
            await asyncio.sleep(h.banner_delay)
        await super()._handle_client()


class SinkController(Controller):
    def factory(self):
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self):
        # aiosmtpd 1.4.6 + port=0: the readiness probe would connect to port 0 and fail
        # (ConnectionRefusedError). Learn the real port from the bound socket first.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Sink:
    def __init__(
        self,
        host: str,
        port: int,
        name: str = "mx.test",
        ca=None,
        require_starttls=False,
        timeout=30,
    ):
        self.h = ScriptedHandler(name)
        kw = {}
        if ca is not None:  # offer STARTTLS with a trustme-issued cert
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(name, host).configure_cert(ctx)
            kw["tls_context"] = ctx
        self.ctl = SinkController(
            self.h,
            hostname=host,
            port=port,
            server_hostname=name,
            require_starttls=require_starttls,
            timeout=timeout,
            ident="test-sink",
            **kw,
        )
        self.host, self.port, self.name = host, port, name

    def start(self):
        self.ctl.start()
        self.port = self.ctl.port  # real port when port=0 was asked
        self.h.reset()  # forget Controller's own readiness-probe connection
        return self

    def stop(self):
        self.ctl.stop()
