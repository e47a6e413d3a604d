"""SMTP AUTH (PLAIN and LOGIN, RFC 4616 / draft-murchison-sasl-login): credential -> ChannelRef.

Secrets are random 256-bit values stored as HMAC-SHA256 (``credsecret``), so checking one costs
microseconds; the credential row is read off the event loop (``Directory.credential``), so AUTH
never blocks other sessions. A failed check answers ``AuthResult(success=False, handled=False)``
with the catalog line as message (aiosmtpd then writes it; with ``handled=True`` and no reply
the client would hang).

Failures are limited per connection (the 3rd failure is answered ``421`` and the connection
closed) and by ``authguard.AuthGuard``: per client IP and per (username, client IP) within a
sliding window, during which every such AUTH gets ``421`` - even with the right secret - so a
guesser learns nothing until the window has passed; failures for a username from all addresses
together only slow its AUTH down, so nobody elsewhere can lock the owner out.

Nothing here logs a secret: usernames are logged only when they name a real credential.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

from aiosmtpd.smtp import AuthResult

from helo_smtp import credsecret
from helo_smtp.errors import CATALOG
from helo_smtp.inbound.authguard import AuthGuard
from helo_smtp.models import ChannelRef
from helo_smtp.runtime import metrics

log = logging.getLogger("helo_smtp.smtp")

DROP_LIMIT = 1 << 20  # bytes of an over-long AUTH response read and dropped before closing
_DUMMY_HASH = credsecret.hash_secret("unknown user: same work as a real check")


def decode_b64(blob: bytes) -> bytes | None:
    """RFC 4954 §4: base64, where a lone ``=`` is an empty response."""
    if blob == b"=":
        return b""
    try:
        return base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None


async def drop_rest_of_line(reader: asyncio.StreamReader, limit: int = DROP_LIMIT) -> None:
    """Drop the rest of an over-long line (at most ``limit`` bytes): closing on unread input
    would reset the connection before the client reads the reply."""
    dropped = 0
    while dropped < limit:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            dropped += len(await reader.read(max(exc.consumed, 1)))
        except asyncio.IncompleteReadError:
            return


def split_plain(data: bytes) -> tuple[bytes, bytes] | None:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` -> (authcid, passwd)."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        return None
    return parts[1], parts[2]


def _fail(name: str) -> AuthResult:
    return AuthResult(success=False, handled=False, message=CATALOG[name].line())


class Authenticator:
    """Checks one username/secret pair for a session (``server``: the HeloSMTP protocol)."""

    def __init__(self, directory: Any, guard: AuthGuard) -> None:
        self.directory = directory
        self.guard = guard

    async def check(self, server: Any, login: bytes, password: bytes) -> AuthResult:
        ip = server.client_ip
        username = login.decode("utf-8", "replace")[:256]
        if self.guard.locked(ip, username):
            metrics.AUTH_FAILURES.labels("locked").inc()
            log.info("event=auth_locked client_ip=%s", ip)
            return _fail("auth_locked")
        delay = self.guard.delay(username)
        if delay > 0:  # failures from elsewhere: slowed, never locked (SPEC §14)
            log.info("event=auth_slowed client_ip=%s delay=%.1f", ip, delay)
            await asyncio.sleep(delay)
        found = await self.directory.credential(username)
        stored = found[1] if found else _DUMMY_HASH
        secret = password.decode("utf-8", "surrogateescape")
        if credsecret.verify_secret(secret, stored) and found is not None:
            cred = found[0]
            log.info("event=auth_ok client_ip=%s username=%s account=%s channel=%s",
                     ip, cred.username, cred.account_id, cred.channel_id or "-")
            return AuthResult(success=True, message=CATALOG["auth_ok"].line(),
                              auth_data=ChannelRef(cred.id, cred.username, cred.account_id,
                                                   cred.channel_id, cred.test))
        return self._failed(server, ip, username, known=found is not None)

    def _failed(self, server: Any, ip: str, username: str, known: bool) -> AuthResult:
        server.auth_failures += 1
        self.guard.record(ip, username)
        metrics.AUTH_FAILURES.labels("invalid").inc()
        log.info("event=auth_failed client_ip=%s username=%s failures=%d", ip,
                 username if known else "-", server.auth_failures)
        if (server.auth_failures >= self.guard.limits.auth_failures_per_connection
                or self.guard.locked(ip, username) or self.guard.full()):
            return _fail("auth_locked")
        return _fail("auth_invalid")
