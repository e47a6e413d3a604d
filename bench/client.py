"""The load client: N concurrent SMTP sessions with STARTTLS and AUTH PLAIN, counting 250s.

Postfix's smtp-source cannot authenticate, and both relays refuse AUTH before TLS, so the load
comes from here. It is raw asyncio streams rather than aiosmtplib because the client has to stay
out of the way of what it measures (its own ceiling is measured against a bare aiosmtpd sink in
the same run). It speaks plain RFC 5321 without PIPELINING: one command, one reply.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

MESSAGE_SIZE = 4096

_FILLER = b"The quick brown fox jumps over the lazy dog; helo-smtp benchmark filler text.\r\n"


def make_message(sender: str, rcpt: str, tag: str, size: int = MESSAGE_SIZE,
                 headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A ``size``-octet message (CRLF, already dot-safe) carrying ``X-Bench-Id: tag``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = (f"From: Bench <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {tag}\r\n"
            f"Message-ID: <{tag}@bench.test>\r\nX-Bench-Id: {tag}\r\n{extra}\r\n").encode()
    body_len = max(0, size - len(head))
    body = (_FILLER * (body_len // len(_FILLER) + 1))[:body_len]
    if body_len >= 2:
        body = body[:-2] + b"\r\n"
    return head + body


@dataclass(frozen=True)
class Target:
    """Where and how to submit: host, port, credentials, TLS mode."""

    host: str
    port: int
    username: str
    password: str
    tls: str = "starttls"  # or "implicit"

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # loopback, self-signed; verification is not measured
        return ctx


class SMTPReplyError(Exception):
    def __init__(self, code: int, line: bytes) -> None:
        super().__init__(line.decode(errors="replace").strip())
        self.code = code


class Session:
    """One authenticated client connection."""

    def __init__(self, target: Target, ctx: ssl.SSLContext) -> None:
        self.target, self.ctx = target, ctx
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def _reply(self) -> tuple[int, bytes]:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed by server")
            if line[3:4] != b"-":
                return int(line[:3]), line

    async def cmd(self, line: bytes, expect: int) -> bytes:
        self.writer.write(line)
        code, text = await self._reply()
        if code != expect:
            raise SMTPReplyError(code, text)
        return text

    async def open(self) -> None:
        t = self.target
        implicit = t.tls == "implicit"
        self.reader, self.writer = await asyncio.open_connection(
            t.host, t.port, ssl=self.ctx if implicit else None)
        code, text = await self._reply()
        if code != 220:
            raise SMTPReplyError(code, text)
        await self.cmd(b"EHLO bench.client.test\r\n", 250)
        if not implicit:
            await self.cmd(b"STARTTLS\r\n", 220)
            await self.writer.start_tls(self.ctx)
            await self.cmd(b"EHLO bench.client.test\r\n", 250)
        token = base64.b64encode(f"\0{t.username}\0{t.password}".encode())
        await self.cmd(b"AUTH PLAIN " + token + b"\r\n", 235)

    async def send(self, sender: str, rcpt: str, data: bytes) -> bytes:
        """One transaction; returns the final reply line (raises unless it is 250)."""
        await self.cmd(f"MAIL FROM:<{sender}>\r\n".encode(), 250)
        await self.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), 250)
        await self.cmd(b"DATA\r\n", 354)
        return await self.cmd(data + b".\r\n", 250)

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._reply(), 5)
        except (TimeoutError, OSError, ConnectionError, ValueError):
            pass
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


@dataclass
class LoadResult:
    """What one load run saw, from the client's side."""

    acked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0   # wall clock of the first connection attempt
    finished: float = 0.0  # wall clock when the last worker stopped
    first_ack: float = 0.0
    last_ack: float = 0.0
    acks: list[float] = field(default_factory=list)  # wall clock of every 250 (for charts)

    @property
    def elapsed(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.acked / self.elapsed

    def as_dict(self) -> dict[str, object]:
        return {"acked": self.acked, "errors": dict(self.errors), "elapsed": self.elapsed,
                "rate": self.rate, "started": self.started, "finished": self.finished}


async def _drop(session: Session | None) -> None:
    if session is not None and hasattr(session, "writer"):
        await session.close()


MessageFactory = Callable[[int], tuple[str, str, bytes]]  # n -> (sender, rcpt, data)


class _Plan:
    """Hands out message numbers until the count or the deadline is reached."""

    def __init__(self, count: int | None, duration: float | None) -> None:
        self.count = count
        self.deadline = time.monotonic() + duration if duration else None
        self._next = itertools.count()

    def take(self) -> int | None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return None
        n = next(self._next)
        if self.count is not None and n >= self.count:
            return None
        return n


async def _worker(target: Target, ctx: ssl.SSLContext, plan: _Plan, factory: MessageFactory,
                  persistent: bool, res: LoadResult) -> None:
    session: Session | None = None
    n = plan.take()
    while n is not None:
        try:
            if session is None:
                session = Session(target, ctx)
                await session.open()
            sender, rcpt, data = factory(n)
            await session.send(sender, rcpt, data)
            now = time.time()
            res.acked += 1
            res.acks.append(now)
            res.first_ack = res.first_ack or now
            res.last_ack = now
        except SMTPReplyError as exc:
            res.errors[str(exc.code)] += 1
            await _drop(session)  # a fresh session is simpler than RSET for a rare event
            session = None
            await asyncio.sleep(0.05)  # a 4xx means back off a little, as a real client would
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            res.errors[type(exc).__name__] += 1
            session = None
            await asyncio.sleep(0.05)
            n = plan.take()
            continue
        if not persistent and session is not None:
            await session.close()
            session = None
        n = plan.take()
    if session is not None:
        await session.close()


async def run_load(target: Target, factory: MessageFactory, *, concurrency: int = 20,
                   persistent: bool = True, count: int | None = None,
                   duration: float | None = None) -> LoadResult:
    """Submit until ``count`` messages were handed out or ``duration`` seconds passed."""
    if count is None and duration is None:
        raise ValueError("give a count or a duration")
    ctx = target.context()
    res = LoadResult(started=time.time())
    plan = _Plan(count, duration)
    await asyncio.gather(*(_worker(target, ctx, plan, factory, persistent, res)
                           for _ in range(concurrency)))
    res.finished = time.time()
    return res


@dataclass
class Probe:
    """Transactional probe: one message every ``interval`` seconds on one persistent session,
    recording submit time per X-Bench-Id (the sink records the receipt time)."""

    target: Target
    sender: str
    rcpt: str
    interval: float = 1.0
    prefix: str = "tx"
    headers: tuple[tuple[str, str], ...] = ()
    submitted: dict[str, float] = field(default_factory=dict)  # tag -> time MAIL was sent
    acked: dict[str, float] = field(default_factory=dict)  # tag -> time of the 250
    errors: Counter[str] = field(default_factory=Counter)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self, stop: asyncio.Event) -> None:
        ctx = self.target.context()
        session: Session | None = None
        next_at = time.monotonic()
        while not stop.is_set():
            tag = f"{self.prefix}-{next(self._seq)}"
            try:
                if session is None:
                    session = Session(self.target, ctx)
                    await session.open()
                data = make_message(self.sender, self.rcpt, tag, headers=self.headers)
                self.submitted[tag] = time.time()
                await session.send(self.sender, self.rcpt, data)
                self.acked[tag] = time.time()
            except SMTPReplyError as exc:
                self.errors[str(exc.code)] += 1
                await _drop(session)
                session = None
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                self.errors[type(exc).__name__] += 1
                session = None
            next_at += self.interval
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if session is not None:
            await session.close()
