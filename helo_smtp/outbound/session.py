"""One SMTP connection to one MX address, and the mail transactions on it (aiosmtplib only).

aiosmtplib writes every byte: it normalises line ends and dot-stuffs DATA (RFC 5321 §4.5.2).
Each call into it is wrapped so a foreign exception becomes an ``Outcome``
(``translate.from_exception``); after any non-SMTP error the connection is closed, since its
state is unknown (aiosmtplib itself closes after a timeout or a 421).

- ``open_connection``: TCP from the pool's source address, banner, EHLO (HELO after a 5xx),
  then STARTTLS when offered. ``TLSMode.MAY`` uses an unverified context (RFC 7435:
  opportunistic TLS); ``TLSMode.VERIFY`` (``require_tls_domains``) checks the certificate
  against the MX host name and fails when STARTTLS is missing; ``TLSMode.OFF`` is the
  plaintext retry after a failed opportunistic handshake.
- ``transact``: MAIL (SMTPUTF8 / BODY=8BITMIME / SIZE when needed and offered), one RCPT per
  recipient, DATA; returns an outcome per recipient and the recipients a ``452 4.5.3`` left
  for a new transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import aiosmtplib

from helo_smtp.models import BounceCategory
from helo_smtp.outbound.mx import Route
from helo_smtp.outbound.outcome import (
    Outcome,
    as_stage,
    closes_connection,
    from_reply,
    is_overflow,
    local,
)
from helo_smtp.outbound.translate import FOREIGN_ERRORS, from_exception
from helo_smtp.runtime import metrics

OUT = metrics.CONNECTIONS_ACTIVE.labels(direction="out")


class TLSMode(StrEnum):
    OFF = "off"  # plaintext retry after a failed opportunistic handshake
    MAY = "may"  # opportunistic, certificate not checked
    VERIFY = "verify"  # required: STARTTLS with a verified certificate


@dataclass(frozen=True, slots=True)
class SessionParams:
    port: int
    helo_name: str
    connect_timeout: float
    command_timeout: float
    data_timeout: float


def tls_contexts(ca_file: str = "") -> dict[TLSMode, ssl.SSLContext]:
    """Client contexts: unverified for opportunistic TLS, verifying for required TLS."""
    may = ssl.create_default_context()
    may.check_hostname = False
    may.verify_mode = ssl.CERT_NONE
    verify = ssl.create_default_context()
    if ca_file:
        verify.load_verify_locations(cafile=ca_file)
    return {TLSMode.MAY: may, TLSMode.VERIFY: verify}


class Connection:
    """An open SMTP session, reusable for several transactions to the same host."""

    def __init__(self, smtp: aiosmtplib.SMTP, route: Route, source_ip: str | None,
                 mode: TLSMode, tls: bool) -> None:
        self.smtp = smtp
        self.route = route
        self.source_ip = source_ip
        self.mode = mode
        self.tls = tls
        self.last_used = time.monotonic()
        self.tag = ""  # idle-cache partition: the domain whose cluster slot it holds
        self.on_close: Callable[[], None] | None = None  # gives that slot back (slots.py)
        self._closed = False
        OUT.inc()

    @property
    def alive(self) -> bool:
        return not self._closed and self.smtp.is_connected

    def supports(self, extension: str) -> bool:
        return self.smtp.supports_extension(extension)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            OUT.dec()
            if self.on_close is not None:
                self.on_close()
        self.smtp.close()

    async def quit(self, timeout: float) -> None:
        """Polite close (QUIT); any error just closes."""
        if self.alive:
            with contextlib.suppress(*FOREIGN_ERRORS):
                await self.smtp.quit(timeout=timeout)
        self.close()

    async def reset(self, timeout: float) -> bool:
        """RSET before the next transaction (RFC 5321 §4.1.1.5); False: connection dropped."""
        if not self.alive:
            self.close()
            return False
        try:
            await self.smtp.rset(timeout=timeout)
        except FOREIGN_ERRORS:
            self.close()
            return False
        return True


async def open_connection(route: Route, source_ip: str | None, params: SessionParams,
                          mode: TLSMode, contexts: dict[TLSMode, ssl.SSLContext]
                          ) -> Connection | Outcome:
    """Connect, read the banner, EHLO and (unless ``OFF``) STARTTLS."""
    smtp = aiosmtplib.SMTP(hostname=route.ip, port=params.port,
                           local_hostname=params.helo_name,
                           source_address=(source_ip, 0) if source_ip else None,
                           timeout=params.command_timeout, start_tls=False)
    stage = "connect"
    try:
        await smtp.connect(timeout=params.connect_timeout)
        stage = "ehlo"
        await _hello(smtp, params)
        tls = False
        if mode != TLSMode.OFF and smtp.supports_extension("starttls"):
            stage = "starttls"
            await smtp.starttls(tls_context=contexts[mode], server_hostname=route.host,
                                timeout=params.connect_timeout)
            stage = "ehlo"
            await _hello(smtp, params)  # RFC 3207 §4.2: forget what was learnt before TLS
            tls = True
    except FOREIGN_ERRORS as exc:
        smtp.close()
        return from_exception(exc, stage)
    except asyncio.CancelledError:  # deadline or shutdown: never leave the socket open
        smtp.close()
        raise
    if mode == TLSMode.VERIFY and not tls:
        smtp.close()
        return local("starttls", "4.7.4", "TLS is required, but was not offered by host",
                     BounceCategory.TLS)
    return Connection(smtp, route, source_ip, mode, tls)


async def _hello(smtp: aiosmtplib.SMTP, params: SessionParams) -> None:
    """EHLO, falling back to HELO after a 5xx (RFC 5321 §3.2)."""
    try:
        await smtp.ehlo(hostname=params.helo_name, timeout=params.command_timeout)
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code < 500 or not smtp.is_connected:
            raise
        await smtp.helo(hostname=params.helo_name, timeout=params.command_timeout)


@dataclass(slots=True)
class TxResult:
    """Per-recipient outcomes of one transaction, and recipients left for a new one."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    overflow: list[tuple[int, str]] = field(default_factory=list)


def _needs_smtputf8(sender: str, rcpts: list[tuple[int, str]]) -> bool:
    return not (sender.isascii() and all(a.isascii() for _, a in rcpts))


def ascii_form(address: str) -> str | None:
    """The address as plain ASCII, its domain as an A-label (RFC 5891), when the local part
    is ASCII; None when only SMTPUTF8 can carry it."""
    if address.isascii():
        return address
    local_part, _, domain = address.rpartition("@")
    if not local_part.isascii():
        return None
    try:
        return f"{local_part}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


def _without_smtputf8(sender: str, rcpts: list[tuple[int, str]], res: TxResult
                      ) -> tuple[str, list[tuple[int, str]]]:
    """RFC 6531 §3.4: for a server without SMTPUTF8, domains go as A-labels; an address
    whose local part is not ASCII cannot be sent there at all (5.6.7)."""
    refusal = local("mail", "5.6.7", "SMTPUTF8 is required, but was not offered by host",
                    BounceCategory.CONTENT)
    ascii_sender = ascii_form(sender)
    if ascii_sender is None:
        res.outcomes.update({rid: refusal for rid, _ in rcpts})
        return sender, []
    kept = []
    for rid, addr in rcpts:
        converted = ascii_form(addr)
        if converted is None:
            res.outcomes[rid] = as_stage(refusal, "rcpt")
        else:
            kept.append((rid, converted))
    return ascii_sender, kept


def _mail_options(conn: Connection, data: bytes, utf8: bool) -> list[str]:
    options = []
    if utf8:
        options.append("SMTPUTF8")
    if conn.supports("8bitmime") and not data.isascii():
        options.append("BODY=8BITMIME")
    if conn.supports("size"):
        options.append(f"SIZE={len(data)}")  # RFC 1870: the server may refuse it up front
    return options


async def transact(conn: Connection, sender: str, rcpts: list[tuple[int, str]], data: bytes,
                   params: SessionParams) -> TxResult:
    """One mail transaction: MAIL, RCPT per recipient, DATA when any was accepted."""
    res = TxResult()
    utf8 = _needs_smtputf8(sender, rcpts)
    if utf8 and not conn.supports("smtputf8"):
        sender, rcpts = _without_smtputf8(sender, rcpts, res)
        utf8 = False
        if not rcpts:
            return res
    conn.last_used = time.monotonic()
    encoding = "utf-8" if utf8 else "ascii"
    try:
        await conn.smtp.mail(sender, options=_mail_options(conn, data, utf8), encoding=encoding,
                             timeout=params.command_timeout)
    except FOREIGN_ERRORS as exc:
        return _all(res, rcpts, _outcome(conn, exc, "mail"))
    accepted = await _recipients(conn, rcpts, encoding, params, res)
    if not accepted:
        return res
    try:
        reply = await conn.smtp.data(data, timeout=params.data_timeout)
    except FOREIGN_ERRORS as exc:
        return _all(res, accepted, _outcome(conn, exc, "data"))
    done = from_reply("data", reply.code, reply.message)
    return _all(res, accepted, done)


async def _recipients(conn: Connection, rcpts: list[tuple[int, str]], encoding: str,
                      params: SessionParams, res: TxResult) -> list[tuple[int, str]]:
    """RCPT for each recipient; returns the accepted ones (the others are in ``res``)."""
    accepted: list[tuple[int, str]] = []
    for i, (rid, addr) in enumerate(rcpts):
        try:
            await conn.smtp.rcpt(addr, encoding=encoding, timeout=params.command_timeout)
        except FOREIGN_ERRORS as exc:
            o = _outcome(conn, exc, "rcpt")
            if is_overflow(o) and accepted:  # RFC 5321 §4.5.3.1.10: the rest go next
                res.overflow = rcpts[i:]
                return accepted
            if conn.alive and not closes_connection(o):
                res.outcomes[rid] = o
                continue
            _all(res, [*accepted, *rcpts[i:]], o)  # the session is over for everyone left
            return []
        accepted.append((rid, addr))
    if not accepted and conn.alive:
        await conn.reset(params.command_timeout)  # end the transaction MAIL opened
    return accepted


def _outcome(conn: Connection, exc: BaseException, stage: str) -> Outcome:
    """Translate, and drop the connection after anything that is not an SMTP reply."""
    o = from_exception(exc, stage)
    if not isinstance(exc, aiosmtplib.SMTPResponseException) or closes_connection(o):
        conn.close()
    return o


def _all(res: TxResult, rcpts: list[tuple[int, str]], o: Outcome) -> TxResult:
    for rid, _ in rcpts:
        res.outcomes[rid] = o
    return res
