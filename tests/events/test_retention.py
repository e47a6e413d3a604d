"""Event retention: events older than ``[events] retention_days`` go, newer ones stay."""

from __future__ import annotations

import asyncio
import time

from helo_smtp.events.retention import purge_once
from helo_smtp.store import events


def test_purge_keeps_recent_events(store):
    now = time.time()

    def plant(c):
        events.add(c, "recipient.accepted", message_id="m-old", recipient="a@x.test",
                   at=now - 31 * 86400)
        events.add(c, "recipient.accepted", message_id="m-new", recipient="a@x.test",
                   at=now - 29 * 86400)
    store.db.write(plant)
    n = asyncio.run(purge_once(store, 30, now=now))
    assert n == 1
    assert [e["message_id"] for e in store.events.list()] == ["m-new"]
    assert asyncio.run(purge_once(store, 0, now=now)) == 0  # 0: kept forever
