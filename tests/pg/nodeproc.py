"""Other processes for the multi-node tests: functions run in ``spawn`` children by the
store-level tests (a fresh interpreter with its own PostgreSQL connections, like another node),
and ``RelayNode``, a whole relay in its own process."""

from __future__ import annotations

import asyncio
import time
import traceback
from pathlib import Path
from typing import Any

from helo_smtp.errors import IdempotencyConflict
from helo_smtp.models import MailType, NewMessage, uuid7
from helo_smtp.store import Store, queue
from tests.support.relayproc import RelayProcess


def new_message(account_id: str, channel_id: str, rcpts: list[str], key: str | None = None,
                fingerprint: str = "fp") -> NewMessage:
    mid = uuid7()
    return NewMessage(mid, account_id, channel_id, MailType.TRANSACTIONAL, "app@sender.test",
                      rcpts, [], b"Subject: x\r\n\r\nhi\r\n", idempotency_key=key,
                      fingerprint=fingerprint, reply=f"250 2.0.0 Ok: queued as {mid}")


def _report(out: Any, fn: Any) -> None:
    try:
        out.put(("ok", fn()))
    except BaseException:  # noqa: BLE001 - the parent test shows the child's traceback
        out.put(("error", traceback.format_exc()))


def claim_all(url: str, node: str, batch: int, barrier: Any, out: Any) -> None:
    """Claim until the queue has nothing due; report the recipient ids this node got."""
    def run() -> tuple[str, list[int]]:
        store = Store.open(url)
        try:
            barrier.wait(30)
            got: list[int] = []
            while True:
                rows = store.db.write(lambda c: queue.claim_in(
                    c, MailType.TRANSACTIONAL, batch, node, 300, time.time()))
                if not rows:
                    return node, got
                got += [r.id for r in rows]
        finally:
            store.close()
    _report(out, run)


def claim_and_die(url: str, node: str, commit: bool, out: Any) -> None:
    """Claim everything due, say how many, then hang (inside the claim's transaction unless
    ``commit``) until the parent SIGKILLs us."""
    store = Store.open(url)

    def fn(c: Any) -> int:
        rows = queue.claim_in(c, MailType.TRANSACTIONAL, 10_000, node, 60, time.time())
        if not commit:
            out.put(("ok", len(rows)))
            time.sleep(600)
        return len(rows)

    n = store.db.write(fn)
    out.put(("ok", n))
    time.sleep(600)


def submit_keys(url: str, account_id: str, channel_id: str, keys: list[str], fingerprint: str,
                barrier: Any, out: Any) -> None:
    """Submit one message per key, all at once; report (key, message id, replayed) or
    (key, "conflict", None)."""
    async def one(store: Store, key: str) -> tuple[str, str, bool | None]:
        msg = new_message(account_id, channel_id, [f"{key}@example.test"], key, fingerprint)
        try:
            res = await store.queue.enqueue(msg)
        except IdempotencyConflict:
            return key, "conflict", None
        return key, res.message_id, res.replayed

    async def all_keys(store: Store) -> list[tuple[str, str, bool | None]]:
        return list(await asyncio.gather(*(one(store, k) for k in keys)))

    def run() -> list[tuple[str, str, bool | None]]:
        store = Store.open(url)
        try:
            barrier.wait(30)
            return asyncio.run(all_keys(store))
        finally:
            store.close()
    _report(out, run)


class RelayNode(RelayProcess):
    """One relay node in its own process, named for the tests' reports."""

    def __init__(self, name: str, config_path: Path, log: Path) -> None:
        super().__init__(config_path, log, name=name)
