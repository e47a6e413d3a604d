"""Outcomes of delivery attempts the store could not take yet (disk full, database away).

Issue #15 item 7: with the disk full, a message was delivered twice. The worker delivered it,
could not write the outcome, and released the rows to the queue as if nothing had happened
(or let their lease lapse): the next claim delivered it again. An attempt that was made is a
fact, not a retry: its outcome is kept here, in memory, and written before anything else the
worker does (``flush`` at the start of every claim round and every housekeeping tick), while the
rows keep their lease (their ids are renewed with the jobs in flight). Only a crash of the
delivery process while the store refuses writes loses the outcome, and then the rows are
delivered again when their lease lapses, as after any crash between DATA and the record
(RFC 5321 §6.1 allows a duplicate, never a loss).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from helo_smtp.errors import StoreError
from helo_smtp.models import ClaimedRecipient, DeliveryResult

log = logging.getLogger("helo_smtp.delivery")

Record = Callable[[list[ClaimedRecipient], list[DeliveryResult]], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    rows: list[ClaimedRecipient]
    results: list[DeliveryResult]


class Unrecorded:
    """Attempted deliveries whose outcome is not in the store yet."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._lock = asyncio.Lock()  # the claim loop and housekeeping both flush

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, rows: list[ClaimedRecipient], results: list[DeliveryResult]) -> None:
        self._pending.append(_Pending(rows, results))

    @property
    def ids(self) -> list[int]:
        """Recipient rows whose lease must be kept until their outcome is written."""
        return [row.id for p in self._pending for row in p.rows]

    async def flush(self, record: Record) -> None:
        """Write every kept outcome, oldest first; raises ``StoreError`` (keeping the rest)
        when the store still refuses."""
        if not self._pending:
            return
        async with self._lock:
            while self._pending:
                first = self._pending[0]
                await record(first.rows, first.results)
                self._pending.pop(0)
                log.info("event=outcome_recorded_late recipients=%d", len(first.results))

    async def try_flush(self, record: Record) -> None:
        """``flush`` for the housekeeping tick: a refusal is expected, logged as one line."""
        try:
            await self.flush(record)
        except StoreError as exc:
            log.error("event=record_failed pending=%d error=%s", len(self._pending),
                      type(exc).__name__)
