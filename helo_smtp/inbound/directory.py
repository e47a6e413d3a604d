"""What the inbound side reads from the store (``ports.Submission``; where a read runs, on the
loop or in a thread, is the backend's business: ``store/submission.py``).

Credentials, accounts and
suppressions are read fresh each time (a revoked credential, a forbidden account or a new
suppression takes effect at once). Channels and verified domains change rarely: what was found
is kept for ``ttl`` seconds (a deleted channel or an unverified domain may still be used that
long; a new one is found at once); ``clear`` (SIGHUP) drops them.
"""

from __future__ import annotations

import time

from helo_smtp.models import Account, Channel, Credential
from helo_smtp.ports import Submission

DEFAULT_TTL = 5.0


class Directory:
    def __init__(self, submission: Submission, ttl: float = DEFAULT_TTL) -> None:
        self.submission = submission
        self.ttl = ttl
        self._channels: dict[str, tuple[float, list[Channel]]] = {}
        self._domains: dict[tuple[str, str], float] = {}

    def clear(self) -> None:
        self._channels.clear()
        self._domains.clear()

    async def credential(self, username: str) -> tuple[Credential, str] | None:
        """The live credential for ``username`` and its secret hash."""
        return await self.submission.credential(username)

    async def account(self, account_id: str) -> Account | None:
        return await self.submission.account(account_id)

    async def domain_verified(self, account_id: str, domain: str) -> bool:
        """Whether ``domain`` is a verified domain of the account (positive answers cached)."""
        key = (account_id, domain)
        if self._domains.get(key, 0.0) > time.monotonic():
            return True
        found = await self.submission.verified_domain(account_id, domain)
        if found is not None:
            self._domains[key] = time.monotonic() + self.ttl
        return found is not None

    async def channel(self, account_id: str, channel_id: str) -> Channel | None:
        """A live channel of the account by id (None: unknown, deleted or someone else's).
        A miss re-reads the account's channels, so a channel made a moment ago is found."""
        hit = self._channels.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            found = next((c for c in hit[1] if c.id == channel_id), None)
            if found is not None:
                return found
        channels = await self.submission.channels(account_id)
        self._channels[account_id] = (time.monotonic() + self.ttl, channels)
        return next((c for c in channels if c.id == channel_id), None)

    async def suppressed(self, channel_id: str, addresses: list[str]) -> set[str]:
        return await self.submission.suppressed(channel_id, addresses)
