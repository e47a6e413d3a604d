"""Background tasks of the event subsystem in the accepting process: the webhook dispatcher
and the event retention purge (``[events] retention_days``)."""

from __future__ import annotations

import asyncio
import logging
import time

from helo_smtp.config import Config
from helo_smtp.store import Store
from helo_smtp.store.events import purge_in

log = logging.getLogger("helo_smtp.events")

PURGE_EVERY = 3600.0  # seconds between purges
PURGE_BATCH = 5000  # rows per transaction: a purge never holds the writer for long


async def purge_once(store: Store, retention_days: float, now: float | None = None) -> int:
    """Delete events older than the retention period; returns how many."""
    if retention_days <= 0:
        return 0
    before = (time.time() if now is None else now) - retention_days * 86_400
    total = 0
    while True:
        n = await store.db.awrite(lambda c: purge_in(c, before, PURGE_BATCH))
        total += n
        if n < PURGE_BATCH:
            return total


async def purge_loop(cfg: Config, store: Store, every: float = PURGE_EVERY) -> None:
    while True:
        try:
            n = await purge_once(store, cfg.events.retention_days)
            if n:
                log.info("event=events_purged count=%d", n)
        except Exception:  # try again next round
            log.exception("event=events_purge_failed")
        await asyncio.sleep(every)


def start(cfg: Config, store: Store) -> list[asyncio.Task[None]]:
    """The dispatcher and the purge, as tasks of the running loop."""
    from helo_smtp.events.dispatcher import Dispatcher

    return [asyncio.create_task(Dispatcher(cfg, store).run(), name="webhooks"),
            asyncio.create_task(purge_loop(cfg, store), name="events-purge")]
