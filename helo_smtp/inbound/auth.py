"""SMTP AUTH (PLAIN and LOGIN, RFC 4616 / draft-murchison-sasl-login): credential -> ChannelRef.

Secrets are random 256-bit values stored as HMAC-SHA256 (``credsecret``), so checking one costs
microseconds; the credential row is read off the event loop (``Directory.credential``), so AUTH
never blocks other sessions. A failed check answers ``AuthResult(success=False, handled=False)``
with the catalog line as message (aiosmtpd then writes it; with ``handled=True`` and no reply
the client would hang).

Failures are limited three ways: per connection (the 3rd failure is answered ``421`` and the
connection closed), and per client IP and per username within a sliding window, during which
every AUTH from that IP or for that username gets ``421`` - even with the right secret - so a
guesser learns nothing until the window has passed. Locked attempts are not counted again.

Nothing here logs a secret: usernames are logged only when they name a real credential.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import deque
from typing import Any

from aiosmtpd.smtp import AuthResult

from helo_smtp import credsecret
from helo_smtp.config import LimitsConfig
from helo_smtp.errors import CATALOG
from helo_smtp.models import ChannelRef
from helo_smtp.runtime import metrics

log = logging.getLogger("helo_smtp.smtp")

_MAX_TRACKED = 50_000  # IPs + usernames remembered at once (memory bound under attack)
_DUMMY_HASH = credsecret.hash_secret("unknown user: same work as a real check")


def decode_b64(blob: bytes) -> bytes | None:
    """RFC 4954 §4: base64, where a lone ``=`` is an empty response."""
    if blob == b"=":
        return b""
    try:
        return base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None


def split_plain(data: bytes) -> tuple[bytes, bytes] | None:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` -> (authcid, passwd)."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        return None
    return parts[1], parts[2]


class AuthGuard:
    """Sliding failure windows per client IP and per username."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self._fails: dict[str, deque[float]] = {}

    def _count(self, key: str, now: float) -> int:
        times = self._fails.get(key)
        if times is None:
            return 0
        cutoff = now - self.limits.auth_failure_window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._fails[key]
            return 0
        return len(times)

    def ip_locked(self, ip: str, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        return self._count("ip:" + ip, t) >= self.limits.auth_failures_per_ip

    def user_locked(self, username: str, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        return self._count("user:" + username, t) >= self.limits.auth_failures_per_user

    def record(self, ip: str, username: str, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        if len(self._fails) >= _MAX_TRACKED:
            self._prune(t)
        for key in ("ip:" + ip, "user:" + username):
            self._fails.setdefault(key, deque()).append(t)

    def _prune(self, now: float) -> None:
        for key in list(self._fails):
            self._count(key, now)
        while len(self._fails) >= _MAX_TRACKED:  # still full: forget the oldest keys
            self._fails.pop(next(iter(self._fails)))


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
        if self.guard.ip_locked(ip) or self.guard.user_locked(username):
            metrics.AUTH_FAILURES.labels("locked").inc()
            log.info("event=auth_locked client_ip=%s", ip)
            return _fail("auth_locked")
        found = await self.directory.credential(username)
        stored = found[1] if found else _DUMMY_HASH
        secret = password.decode("utf-8", "surrogateescape")
        if credsecret.verify_secret(secret, stored) and found is not None:
            cred = found[0]
            log.info("event=auth_ok client_ip=%s username=%s account=%s channel=%s",
                     ip, cred.username, cred.account_id, cred.channel_id or "-")
            return AuthResult(success=True, message=CATALOG["auth_ok"].line(),
                              auth_data=ChannelRef(cred.id, cred.username, cred.account_id,
                                                   cred.channel_id))
        return self._failed(server, ip, username, known=found is not None)

    def _failed(self, server: Any, ip: str, username: str, known: bool) -> AuthResult:
        server.auth_failures += 1
        self.guard.record(ip, username)
        metrics.AUTH_FAILURES.labels("invalid").inc()
        log.info("event=auth_failed client_ip=%s username=%s failures=%d", ip,
                 username if known else "-", server.auth_failures)
        if (server.auth_failures >= self.guard.limits.auth_failures_per_connection
                or self.guard.ip_locked(ip) or self.guard.user_locked(username)):
            return _fail("auth_locked")
        return _fail("auth_invalid")
