"""Delivery-side test helpers: messages put straight into the queue, both workers on a loop
thread, DKIM records served by the local DNS server.

    rig = WorkerRig(cfg, store)            # MXResolver + both Workers, running
    mid = enqueue(store, tenant, ["a@example.test"]); rig.wake()
    bulk_enqueue(store, tenant, 3000, "x{}@slow.test", MailType.BROADCAST)
    rig.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import ssl
import time
import warnings
from collections.abc import Callable, Iterator

import dns.exception
import pytest

from helo_smtp import keys
from helo_smtp.config import Config
from helo_smtp.models import MailType, NewMessage, uuid7
from helo_smtp.outbound.mx import MXResolver
from helo_smtp.outbound.worker import Worker
from helo_smtp.runtime.daemon import node_id
from helo_smtp.runtime.logs import parse_kv
from helo_smtp.store import Store
from helo_smtp.store.queue import enqueue_in
from tests.support.localdns import LocalDNS
from tests.support.net import NET
from tests.support.relay import LoopThread, Tenant
from tests.support.sinks import ScriptedHandler, Sink


def raw_message(sender: str, rcpts: list[str], *, subject: str = "hello",
                body: str = "Hello there.\r\n", headers: dict[str, str] | None = None,
                message_id: str | None = None) -> bytes:
    """A message as the inbound side stores it: Received and Message-ID present, CRLF."""
    lines = [
        "Received: from client.test (client.test [127.0.0.1]) by relay.test with ESMTPSA;"
        f" {email.utils.formatdate()}",
        f"Message-ID: <{message_id or uuid7()}@relay.test>",
        f"Date: {email.utils.formatdate()}",
        f"From: App <{sender}>",
        f"To: {', '.join(rcpts)}",
        f"Subject: {subject}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def new_message(tenant: Tenant, rcpts: list[str], mail_type: MailType = MailType.TRANSACTIONAL,
                *, raw: bytes | None = None, subject: str = "hello",
                broadcast: str | None = None, created_at: float | None = None,
                track_opens: bool = False, track_links: bool = False) -> NewMessage:
    mid = uuid7()
    data = raw if raw is not None else raw_message(tenant.sender, rcpts, subject=subject,
                                                   message_id=mid)
    key = None
    if mail_type == MailType.BROADCAST:
        key = f"name:{broadcast or 'test'}"
    msg = NewMessage(mid, tenant.account.id, tenant.channel.id, mail_type, tenant.sender,
                     list(rcpts), [], data, subject=subject, broadcast_key=key,
                     broadcast_name=broadcast or ("test" if key else None),
                     track_opens=track_opens, track_links=track_links,
                     reply=f"250 2.0.0 Ok: queued as {mid}")
    if created_at is not None:
        msg.created_at = created_at
    return msg


def enqueue(store: Store, tenant: Tenant, rcpts: list[str],
            mail_type: MailType = MailType.TRANSACTIONAL, **kw: object) -> str:
    """Queue one message through ``store.queue`` (as the inbound side would); its id."""
    msg = new_message(tenant, rcpts, mail_type, **kw)  # type: ignore[arg-type]
    lifetime = store.queue.lifetimes[mail_type]
    return store.db.write(lambda c: enqueue_in(c, msg, lifetime)).message_id


def bulk_enqueue(store: Store, tenant: Tenant, n: int, rcpt: Callable[[int], str],
                 mail_type: MailType) -> list[str]:
    """``n`` one-recipient messages in one transaction (fast: thousands per second)."""
    msgs = [new_message(tenant, [rcpt(i)], mail_type) for i in range(n)]
    lifetime = store.queue.lifetimes[mail_type]
    store.db.write(lambda c: [enqueue_in(c, m, lifetime) for m in msgs])
    return [m.id for m in msgs]


class WorkerRig:
    """The delivery half of the relay: one MXResolver and both Workers on a loop thread."""

    def __init__(self, cfg: Config, store: Store,
                 types: tuple[MailType, ...] = (MailType.TRANSACTIONAL, MailType.BROADCAST)
                 ) -> None:
        self.cfg, self.store = cfg, store
        self.lt = LoopThread()
        self.node = node_id(cfg)
        store.queue.release_node(self.node)
        self.resolver = MXResolver(cfg.dns)
        self.workers = {mt: Worker(mt, cfg, store, self.resolver, self.node) for mt in types}
        self._tasks = [self.lt.run(self._start(w)) for w in self.workers.values()]
        self._stopped = False

    @staticmethod
    async def _start(w: Worker) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(w.run())

    def wake(self, mail_type: MailType | None = None) -> None:
        for mt, w in self.workers.items():
            if mail_type is None or mt == mail_type:
                w.wake()

    def run(self, coro, timeout: float = 30.0):
        return self.lt.run(coro, timeout)

    def stop(self, grace: float = 2.0) -> None:
        if self._stopped:
            return
        self._stopped = True

        async def _stop() -> None:
            await asyncio.gather(*(w.stop(grace) for w in self.workers.values()))
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            self.lt.run(_stop(), timeout=grace + 20)
        finally:
            self.lt.close()


def publish_dkim(dns_srv: LocalDNS, tenant: Tenant) -> None:
    """Serve the tenant's DKIM key at <selector>._domainkey.<domain> (split in 255-char
    strings, RFC 7208 §3.3 style, as real zones do)."""
    record = keys.dkim_record(tenant.domain.dkim_public_key)
    chunks = " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))
    dns_srv.add(f"{tenant.domain.dkim_selector}._domainkey.{tenant.domain.name}", "TXT", chunks)


def dkim_dnsfunc(dns_srv: LocalDNS) -> Callable[..., bytes]:
    """A ``dnsfunc`` for ``dkim.verify`` that asks the local DNS server (never the system)."""
    resolver = dns_srv.resolver(asynchronous=False)

    def txt(name: bytes, timeout: float = 5) -> bytes:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except dns.exception.DNSException:
            return b""
        return b"".join(b"".join(r.strings) for r in answer)

    return txt


def wait_states(store: Store, message_id: str, want: Callable[[dict[str, int]], bool],
                timeout: float = 10.0) -> dict[str, int]:
    """Poll the recipient states of one message until ``want(counts)``."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = {}
        for r in store.admin.recipients(message_id):
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        if want(counts):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for states of {message_id}: {counts}")
        time.sleep(0.02)


class RecordingHandler(ScriptedHandler):
    """A scripted sink handler that also keeps every MAIL command's parameters."""

    def reset(self) -> None:
        super().reset()
        self.mail_options: list[list[str]] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_options.append(list(mail_options))
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


def start_sink(host: str, port: int, name: str, *, ca: object = None,
               tls_max: ssl.TLSVersion | None = None, smtputf8: bool = False) -> Sink:
    """A sink beyond the five session ones (same port, another loopback address).

    ``tls_max`` caps the TLS version the sink will speak: below TLS 1.2 every modern client
    handshake fails, which is how a broken STARTTLS is scripted. It advertises SMTPUTF8
    (RFC 6531) only when ``smtputf8`` is true."""
    sink = Sink(host, port, name, ca=ca)
    sink.h = sink.ctl.handler = RecordingHandler(name)
    kwargs = sink.ctl.SMTP_kwargs
    if tls_max is not None:
        ctx = kwargs["tls_context"]
        with warnings.catch_warnings():  # TLS 1.0 is deprecated: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = tls_max
    kwargs["enable_SMTPUTF8"] = smtputf8  # aiosmtpd's Controller would default it on
    return sink.start()


@pytest.fixture
def extra_sinks(mx_port):
    """``extra_sinks(host_number, name, **kw)`` -> a started Sink on NET+host_number:mx_port,
    stopped after the test."""
    started: list[Sink] = []

    def make(n: int, name: str, **kw: object) -> Sink:
        sink = start_sink(f"{NET}{n}", mx_port, name, **kw)  # type: ignore[arg-type]
        started.append(sink)
        return sink

    yield make
    for s in started:
        s.stop()


class LogRecords(logging.Handler):
    """Records of one logger, caught by a handler on that logger itself (so it works whatever
    another test did to propagation or the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def kv(self, event: str) -> list[dict[str, str]]:
        """The key=value fields of every ``event=<event>`` line."""
        out = [parse_kv(r.getMessage()) for r in self.records]
        return [f for f in out if f and f.get("event") == event]


@contextlib.contextmanager
def capture_log(name: str, level: int = logging.DEBUG) -> Iterator[LogRecords]:
    logger = logging.getLogger(name)
    handler, old_level = LogRecords(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
