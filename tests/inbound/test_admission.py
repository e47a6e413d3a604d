"""Per-type admission (issue #23): each mail type has its own high-water mark, so a broadcast
backlog above its mark refuses broadcast mail with 451 4.3.2 and never transactional mail."""

from __future__ import annotations

import asyncio

from helo_smtp.errors import CATALOG
from tests.inbound.clients import accepted, message, send, session

BACKLOG = [f"reader{i}@example.test" for i in range(12)]


def c(name: str) -> str:
    return CATALOG[name].line()


def _backlog(relay, ctx) -> None:
    """Twelve pending broadcast recipients, submitted on the broadcast listener."""
    s = session(relay, ctx, "broadcast")
    accepted(send(s, relay.tenant.sender, BACKLOG, message()))
    s.quit()


def test_broadcast_backlog_over_its_mark_refuses_broadcast_only(make_relay, client_ctx):
    relay = make_relay(server={"broadcast_high_water": 10, "queue_high_water": 1000})
    _backlog(relay, client_ctx)
    tx = session(relay, client_ctx)
    code, text = tx.mail(relay.tenant.sender)
    assert f"{code} {text.decode()}" == c("sender_ok")
    tx.rset()
    accepted(send(tx, relay.tenant.sender, ["a@example.test"], message()))
    bc = session(relay, client_ctx, "broadcast")
    assert send(bc, relay.tenant.sender, ["b@example.test"], message()) == c("queue_full")
    # on a header listener the type is known after DATA: refused there, same reply
    tagged = message(headers={"X-Helo-Mail-Type": "broadcast"})
    assert send(tx, relay.tenant.sender, ["c@example.test"], tagged) == c("queue_full")
    assert relay.store.queue.pending_count() == len(BACKLOG) + 1


def test_transactional_mark_ignores_broadcast_volume(make_relay, client_ctx):
    """Broadcast pending above even the transactional mark: transactional still 250s, and the
    broadcast mark (never above queue_high_water) refuses more broadcast."""
    relay = make_relay(server={"queue_high_water": 5})
    _backlog(relay, client_ctx)
    relay.run(_refresh(relay))  # the counts as the database has them, not only the local bump
    tx = session(relay, client_ctx)
    for i in range(3):
        accepted(send(tx, relay.tenant.sender, [f"t{i}@example.test"], message()))
    bc = session(relay, client_ctx, "broadcast")
    assert send(bc, relay.tenant.sender, ["b@example.test"], message()) == c("queue_full")


def test_transactional_mark_still_bites_on_transactional_volume(make_relay, client_ctx):
    relay = make_relay(server={"queue_high_water": 1, "broadcast_high_water": 1000})
    tx = session(relay, client_ctx)
    accepted(send(tx, relay.tenant.sender, ["a@example.test", "b@example.test"], message()))
    assert send(tx, relay.tenant.sender, ["c@example.test"], message()) == c("queue_full")
    bc = session(relay, client_ctx, "broadcast")  # broadcast mark: min(1000, 1) = 1, own count 0
    accepted(send(bc, relay.tenant.sender, ["d@example.test"], message()))


async def _refresh(relay) -> None:
    await asyncio.to_thread(relay.relay.inbound.capacity.refresh)
