"""The ports: what each consumer needs from the store, in its own words, typed with the models.

A consumer takes its port, never the whole store: the SMTP door (``inbound/``) takes a
``Submission``, the delivery workers (``outbound/``) a ``Delivery``, the HTTP side a
``Tracking``. ``store/`` implements each once per backend (``store/ports.py``); a test may hand
in anything with these methods. What differs between the backends (SQLite's loop writer,
PostgreSQL's pool, where a read may run) is one ``Backend`` capability object, never a
``dialect == ...`` test in a consumer.

To plug in a new consumer (an HTTP send API, events and webhooks): write its port here, small
and in its words, and its implementation next to the others in ``store/ports.py``. A door
that accepts mail reuses ``Submission``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from helo_smtp.models import (
    Account,
    ApiKey,
    Channel,
    ClaimedRecipient,
    Credential,
    DeliveryResult,
    Domain,
    MailType,
    NewMessage,
    StoredMessage,
)


class Backend(Protocol):
    """What differs between the store's backends, as one capability object."""

    #: SQLite: a point read costs less than the thread hop that would carry it off the loop.
    #: PostgreSQL: every read is a round trip, so it never runs on the loop.
    reads_on_loop: bool
    #: Several relay nodes share this store (PostgreSQL): pacing and connection caps live in
    #: the store so a pool's limits hold for the whole cluster, not per node.
    shared: bool

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit writes submitted on ``loop``'s thread on the loop itself (SQLite)."""

    def unbind_loop(self) -> None:
        """Flush what the loop has queued and go back to the writer thread."""


# ---- the door: SMTP today, an HTTP send API later ------------------------------------------
class Committed(Protocol):
    """The answer to one commit (``store/queue.EnqueueResult``)."""

    message_id: str
    reply: str  # the 250 line for this message
    replayed: bool  # an idempotent replay: nothing was queued
    broadcast_id: str | None


class Submission(Protocol):
    """What a door needs to accept one message. Reads run where the backend says."""

    async def credential(self, username: str) -> tuple[Credential, str] | None:
        """The live credential for ``username`` and its secret hash."""

    async def account(self, account_id: str) -> Account | None: ...

    async def channels(self, account_id: str) -> list[Channel]:
        """The account's live channels."""

    async def verified_domain(self, account_id: str, domain: str) -> Domain | None: ...

    async def suppressed(self, channel_id: str, addresses: list[str]) -> set[str]: ...

    async def commit(self, message: NewMessage) -> Committed:
        """One transaction; resolves only when the COMMIT is on disk (then the 250)."""

    def backlog(self) -> dict[MailType, int]:
        """Recipients waiting for delivery (not held), per mail type (blocking: call it off
        the loop). Each type's admission mark counts only its own (``inbound/capacity.py``)."""


#: Told about each message just committed (not replays), e.g. to hand it to the delivery
#: process, whose first delivery then need not read it back.
CommittedHook = Callable[[StoredMessage], None]


# ---- the delivery workers ------------------------------------------------------------------
class RecentMessages(Protocol):
    def get(self, message_id: str) -> StoredMessage | None: ...

    def add(self, message: StoredMessage) -> None: ...


class DeliveryQueue(Protocol):
    """Claim due recipients, record outcomes, give rows back (``store/queue.py``)."""

    recent: RecentMessages  # messages just committed, for their first delivery

    async def claim(self, mail_type: MailType, limit: int, node: str, lease: float,
                    now: float | None = None, skip: Sequence[str] = (), since: float = 0.0
                    ) -> list[ClaimedRecipient]:
        """Lease up to ``limit`` due rows, none at a domain in ``skip``, none due before
        ``since`` (``first_due``)."""

    def first_due(self, mail_type: MailType, skip: Sequence[str], now: float | None = None
                  ) -> float | None:
        """When the earliest due row outside ``skip`` became due (None: none is)."""

    async def record(self, results: Sequence[DeliveryResult]) -> None: ...

    async def release(self, ids: Sequence[int], due_at: float) -> None:
        """Due again at ``due_at``, unleased."""

    async def extend(self, ids: Sequence[int], node: str, until: float) -> None:
        """Renew the leases ``node`` still holds."""

    def next_due(self, mail_type: MailType) -> float | None: ...

    def load_message(self, message_id: str) -> StoredMessage | None: ...


class SharedThrottle(Protocol):
    """Pacing and connection caps for the whole cluster (``store/throttle.py``); used only
    when ``Backend.shared``."""

    async def take(self, pool: str, domain: str, n: int = 1, *, pool_rate: float,
                   domain_rate: float) -> float: ...

    async def acquire_slot(self, pool: str, domain: str, cap: int, holder: str,
                           lease: float) -> int | None: ...

    async def release_slot(self, pool: str, domain: str, slot: int, holder: str) -> None: ...

    def release_slot_later(self, pool: str, domain: str, slot: int, holder: str
                           ) -> Future[Any]: ...

    async def renew_slots(self, pool: str, slots: list[tuple[str, int]], holder: str,
                          lease: float) -> None: ...

    def held_by_others(self, pool: str, domain: str, holder: str) -> int: ...

    async def give_back(self, pool: str, domain: str, n: int = 1, *, pool_rate: float,
                        domain_rate: float) -> None: ...


class Slowdowns(Protocol):
    """Remote-requested slowdowns of a pool (``outbound/pacing.py``)."""

    def list(self, pool: str | None = None, active_at: float | None = None,
             period: float = ...) -> list[Any]: ...

    def submit(self, s: Any) -> Future[None]: ...


class SigningKeys(Protocol):
    def get(self, name: str) -> Domain | None:
        """The sending domain ``name`` with its DKIM key."""


class Secrets(Protocol):
    def get_or_create_secret(self, key: str) -> str: ...


class Delivery(Protocol):
    """What a delivery worker needs from the store."""

    backend: Backend
    queue: DeliveryQueue
    throttle: SharedThrottle
    destinations: Slowdowns
    domains: SigningKeys
    settings: Secrets


# ---- the HTTP side (tracking, unsubscribe, health) -----------------------------------------
class Engagements(Protocol):
    async def record(self, kind: str, message_id: str, recipient: str, **data: Any) -> Any:
        """Record an open, click or unsubscribe; None when the recipient is unknown."""


class Tracking(Protocol):
    """What the HTTP side needs: record engagement, the token secret, answer /healthz."""

    engagement: Engagements
    settings: Secrets

    def ping(self) -> bool: ...


class ApiKeyRows(Protocol):
    """What the HTTP send API reads about its keys (``store/apikeys.py``). Read fresh on every
    request, so a revoked key stops working on every node at once."""

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The live key and its secret hash."""

    def touch(self, key_id: str, when: float) -> None:
        """Record the last-used time."""
