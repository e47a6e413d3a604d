"""``Authorization: Bearer helo_<id>_<secret>`` -> the key's account and channel.

The id finds the row; the secret is checked against its hash in constant time
(``credsecret``). Failures are counted per client IP in a sliding window, as SMTP AUTH
failures are: past the limit the IP gets ``auth_locked`` (HTTP 429) until the window moves on,
even with a good key, so guessing costs the guesser the window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from helo_smtp import credsecret
from helo_smtp.errors import AuthLocked, Unauthorized
from helo_smtp.models import ChannelRef
from helo_smtp.ports import ApiKeyRows

log = logging.getLogger("helo_smtp.api")
TOUCH_EVERY = 60.0  # seconds: last-used time is a hint, not a write per request


class KeyCheck:
    def __init__(self, rows: ApiKeyRows, reads_on_loop: bool, limit: int,
                 window: float) -> None:
        self.rows = rows
        self.reads_on_loop = reads_on_loop
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _locked(self, ip: str, now: float) -> bool:
        times = self._failures.get(ip)
        if not times:
            return False
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[ip]
            return False
        return len(times) >= self.limit

    def _fail(self, ip: str, now: float) -> Unauthorized:
        if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(ip, deque()).append(now)
        log.info("event=api_auth_failed client_ip=%s", ip)
        return Unauthorized()

    async def identify(self, header: str | None, ip: str) -> ChannelRef:
        """The key's scope, or raise ``Unauthorized`` / ``AuthLocked``."""
        now = time.monotonic()
        if self._locked(ip, now):
            raise AuthLocked()
        scheme, _, key = (header or "").partition(" ")
        parts = credsecret.split_api_key(key.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            raise self._fail(ip, now)
        key_id, secret = parts
        if self.reads_on_loop:
            found = self.rows.lookup(key_id)
        else:
            found = await asyncio.to_thread(self.rows.lookup, key_id)
        if found is None or not credsecret.verify_secret(secret, found[1]):
            raise self._fail(ip, now)
        key_row = found[0]
        self._touch(key_row.id)
        return ChannelRef(key_row.id, f"api:{key_row.id}", key_row.account_id,
                          key_row.channel_id)

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if self._touched.get(key_id, 0.0) > now - TOUCH_EVERY:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._write_touch(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, key_id: str) -> None:
        try:
            await asyncio.to_thread(self.rows.touch, key_id, time.time())
        except Exception as exc:  # noqa: BLE001 - a hint; the request already succeeded
            log.warning("event=api_key_touch_failed error=%s", type(exc).__name__)
