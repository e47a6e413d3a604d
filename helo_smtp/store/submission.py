"""The store's side of ``ports.Submission``: what a door reads and commits.

Every read is a point lookup. On SQLite it runs right on the event loop (``reads_on_loop``:
tens of microseconds on pages in memory, less than the thread hop that would carry it off the
loop; the benchmarks' profile had those hops as the largest single cost). On PostgreSQL each
read is a round trip and runs in a worker thread (``asyncio.to_thread``). Where a read runs is
the backend's business: the door only awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from helo_smtp.models import Account, Channel, Credential, Domain, NewMessage
from helo_smtp.ports import Backend
from helo_smtp.store.accounts import Accounts
from helo_smtp.store.channels import Channels
from helo_smtp.store.credentials import Credentials
from helo_smtp.store.domains import Domains
from helo_smtp.store.queue import EnqueueResult, Queue
from helo_smtp.store.suppressions import Suppressions

T = TypeVar("T")


class StoreSubmission:
    """``ports.Submission`` over one store."""

    def __init__(self, backend: Backend, credentials: Credentials, accounts: Accounts,
                 channels: Channels, domains: Domains, suppressions: Suppressions,
                 queue: Queue) -> None:
        self._backend = backend
        self._credentials = credentials
        self._accounts = accounts
        self._channels = channels
        self._domains = domains
        self._suppressions = suppressions
        self._queue = queue

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._backend.reads_on_loop:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def credential(self, username: str) -> tuple[Credential, str] | None:
        return await self._read(self._credentials.lookup, username)

    async def account(self, account_id: str) -> Account | None:
        return await self._read(self._accounts.get, account_id)

    async def channels(self, account_id: str) -> list[Channel]:
        return await self._read(self._channels.list, account_id)

    async def verified_domain(self, account_id: str, domain: str) -> Domain | None:
        return await self._read(self._domains.verified_for, account_id, domain)

    async def suppressed(self, channel_id: str, addresses: list[str]) -> set[str]:
        return await self._read(self._suppressions.filter, channel_id, addresses)

    async def commit(self, message: NewMessage) -> EnqueueResult:
        return await self._queue.commit(message)

    def backlog(self) -> int:
        return self._queue.pending_count()
