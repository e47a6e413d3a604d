"""messages, queue and broadcasts commands against a store with queued, deferred, delivered and
bounced recipients, written through the real queue (enqueue, claim, record). Runs on SQLite and
on PostgreSQL: the operator queries are store SQL like any other."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from helo_smtp.models import BounceCategory, DeliveryResult, MailType, RecipientState
from helo_smtp.store import Store
from helo_smtp.store.destinations import Slowdown
from tests.cli.conftest import CLI, enqueue
from tests.support.pgserver import BACKENDS
from tests.support.relay import make_tenant

#: The operator queries (store/admin.py) run on both backends; the rest on SQLite only.
both = pytest.mark.parametrize("backend", BACKENDS, indirect=True)


@dataclass
class Seeded:
    tx: str  # transactional: a delivered, b deferred, c queued
    bc: str  # broadcast "May news": d delivered, e bounced
    ids: dict[str, int]  # address -> recipient row id
    channel_id: str


def _claim(store: Store, mail_type: MailType, now: float | None = None):
    return asyncio.run(store.queue.claim(mail_type, 100, "test-node", 60.0, now=now))


@pytest.fixture
def seeded(cli: CLI, db_store: Store) -> Seeded:
    t = make_tenant(db_store)
    tx = enqueue(db_store, t.account.id, t.channel.id, t.sender,
                 ["a@example.test", "b@example.test", "c@other.test"], subject="Receipt 42")
    bc = enqueue(db_store, t.account.id, t.channel.id, t.sender,
                 ["d@example.test", "e@other.test"], subject="News", mail_type="broadcast",
                 broadcast="May news")
    claimed = _claim(db_store, MailType.TRANSACTIONAL) + _claim(db_store, MailType.BROADCAST)
    ids = {c.address: c.id for c in claimed}
    now = time.time()
    asyncio.run(db_store.queue.record([
        DeliveryResult(ids["a@example.test"], RecipientState.DELIVERED, "data", "2.0.0 Ok",
                       code=250, status="2.0.0", remote_host="mx1.example.test", tls=True),
        DeliveryResult(ids["b@example.test"], RecipientState.DEFERRED, "rcpt",
                       "4.7.1 greylisted, come back later", code=451, status="4.7.1",
                       category=BounceCategory.POLICY, remote_host="mx1.example.test",
                       next_attempt_at=now + 600),
        DeliveryResult(ids["d@example.test"], RecipientState.DELIVERED, "data", "2.0.0 Ok",
                       code=250, status="2.0.0", remote_host="mx1.example.test"),
        DeliveryResult(ids["e@other.test"], RecipientState.BOUNCED, "rcpt",
                       "5.1.1 no such user", code=550, status="5.1.1",
                       category=BounceCategory.INVALID_RECIPIENT, remote_host="mx3.example.test"),
    ]))
    asyncio.run(db_store.queue.release([ids["c@other.test"]], now))
    return Seeded(tx, bc, ids, t.channel.id)


def _states(store: Store, message_id: str) -> dict[str, tuple[str, int]]:
    return {r["address"]: (r["state"], r["held"]) for r in store.admin.recipients(message_id)}


@both
def test_messages_list_filters(cli: CLI, seeded: Seeded):
    rows = cli.json("messages", "list")
    assert [r["id"] for r in rows] == [seeded.bc, seeded.tx]  # newest first
    tx = rows[1]
    assert (tx["subject"], tx["recipients"], tx["status"], tx["channel"], tx["mail_type"]) == (
        "Receipt 42", 3, "delayed", "main", "transactional")
    assert [r["id"] for r in cli.json("messages", "list", "--status", "delayed")] == [seeded.tx]
    assert [r["id"] for r in cli.json("messages", "list", "--channel", "acme/main",
                                      "--since", "1h")] == [seeded.bc, seeded.tx]
    assert cli.json("messages", "list", "--since", "2999-01-01") == []
    assert len(cli.json("messages", "list", "--limit", "1")) == 1
    assert "neither a duration" in cli.fail("messages", "list", "--since", "yesterday", code=2)
    assert "'lost'" in cli.fail("messages", "list", "--status", "lost", code=2)
    assert "no channel" in cli.fail("messages", "list", "--channel", "ghost")


@both
def test_messages_show_has_headers_recipients_and_attempts(cli: CLI, seeded: Seeded):
    out = cli.json("messages", "show", seeded.tx)
    assert (out["tags"], out["metadata"], out["track_opens"]) == ([], {}, False)
    assert out["headers"]["Subject"] == "Receipt 42"
    assert out["headers"]["To"] == "a@example.test, b@example.test, c@other.test"
    states = {r["address"]: r["state"] for r in out["recipients_detail"]}
    assert states == {"a@example.test": "delivered", "b@example.test": "deferred",
                      "c@other.test": "queued"}
    attempts = {a["address"]: a for a in out["attempts"]}
    assert set(attempts) == {"a@example.test", "b@example.test"}
    assert (attempts["b@example.test"]["code"], attempts["b@example.test"]["status"],
            attempts["b@example.test"]["text"]) == (451, "4.7.1",
                                                    "4.7.1 greylisted, come back later")
    assert attempts["a@example.test"]["remote_host"] == "mx1.example.test"
    human = cli.ok("messages", "show", seeded.tx).stdout
    assert "Subject: Receipt 42" in human and "greylisted" in human and "attempts:" in human
    assert "no message 'nope'" in cli.fail("messages", "show", "nope")


@both
def test_queue_stats(cli: CLI, seeded: Seeded, db_store: Store):
    db_store.destinations.set(Slowdown("broadcast", "slow.test", time.time() + 600, 0.25,
                                       "421 4.7.0 rate limited"))
    out = cli.json("queue", "stats")
    by_state = {(r["mail_type"], r["state"]): r["count"] for r in out["by_state"]}
    assert by_state == {("transactional", "delivered"): 1, ("transactional", "deferred"): 1,
                        ("transactional", "queued"): 1, ("broadcast", "delivered"): 1,
                        ("broadcast", "bounced"): 1}
    (pending,) = out["pending"]
    assert (pending["mail_type"], pending["pending"], pending["due"], pending["held"]) == (
        "transactional", 2, 1, 0)
    assert pending["oldest_age"] >= 0
    domains = {d["domain"]: (d["pending"], d["queued"], d["deferred"]) for d in out["domains"]}
    assert domains == {"example.test": (1, 0, 1), "other.test": (1, 1, 0)}
    (slow,) = out["slowed"]
    assert (slow["pool"], slow["domain"], slow["factor_now"]) == ("broadcast", "slow.test", 0.25)
    assert slow["slow_until"].endswith("Z")  # a time, shown as ISO 8601 UTC
    human = cli.ok("queue", "stats").stdout
    assert "slowed destinations:" in human and "slow.test" in human


@both
def test_queue_list_filters(cli: CLI, seeded: Seeded):
    rows = cli.json("queue", "list")
    assert [r["address"] for r in rows] == ["c@other.test", "b@example.test"]  # soonest due
    assert [r["address"] for r in cli.json("queue", "list", "--state", "deferred")] == [
        "b@example.test"]
    assert [r["address"] for r in cli.json("queue", "list", "--domain", "other.test")] == [
        "c@other.test"]
    assert len(cli.json("queue", "list", "--channel", "acme/main")) == 2
    assert cli.json("queue", "list", "--state", "held") == []
    assert "invalid domain" in cli.fail("queue", "list", "--domain", "bad_domain")


@both
def test_hold_and_release_by_domain(cli: CLI, seeded: Seeded, db_store: Store):
    out = cli.json("queue", "hold", "--domain", "other.test")
    assert out["recipients"] == 1
    assert _states(db_store, seeded.tx)["c@other.test"] == ("queued", 1)
    (held,) = cli.json("queue", "list", "--state", "held")
    assert (held["address"], held["held"], held["state"]) == ("c@other.test", True, "queued")
    # A held row is never claimed, however late it is, and is not retried.
    assert cli.json("queue", "retry", "--domain", "other.test")["recipients"] == 0
    later = _claim(db_store, MailType.TRANSACTIONAL, now=time.time() + 3600)
    assert [c.address for c in later] == ["b@example.test"]
    asyncio.run(db_store.queue.release([c.id for c in later], time.time() + 600))
    assert cli.json("queue", "release", "--domain", "other.test")["recipients"] == 1
    assert [c.address for c in _claim(db_store, MailType.TRANSACTIONAL)] == ["c@other.test"]
    counts = db_store.events.counts(seeded.tx)
    assert counts["queue.held"] == 1 and counts["queue.released"] == 1


@both
def test_retry_makes_deferred_rows_due_now_but_not_leased_ones(cli: CLI, seeded: Seeded,
                                                                db_store: Store):
    nxt = db_store.queue.next_due(MailType.TRANSACTIONAL)
    assert nxt is not None and nxt <= time.time()  # c is due
    leased = _claim(db_store, MailType.TRANSACTIONAL)  # c in flight now
    assert [c.address for c in leased] == ["c@other.test"]
    out = cli.json("queue", "retry", seeded.tx)
    assert out["recipients"] == 1  # b only: c's delivery is in flight
    due = _claim(db_store, MailType.TRANSACTIONAL)
    assert [c.address for c in due] == ["b@example.test"]
    assert db_store.events.counts(seeded.tx)["queue.retried"] == 1
    rid = str(seeded.ids["b@example.test"])
    asyncio.run(db_store.queue.release([seeded.ids["b@example.test"]], time.time() + 900))
    assert cli.json("queue", "retry", rid)["recipients"] == 1


@both
def test_purge_asks_then_records_expired(cli: CLI, seeded: Seeded, db_store: Store):
    assert cli.fail("queue", "purge", seeded.tx) == "Error: aborted"  # no 'y' on stdin
    assert _states(db_store, seeded.tx)["b@example.test"] == ("deferred", 0)
    res = cli.ok("queue", "purge", seeded.tx, input="y\n")
    assert "purge 2 pending recipient(s)?" in res.stderr
    assert "purge: 2 pending recipient(s)" in res.stdout
    assert _states(db_store, seeded.tx) == {"a@example.test": ("delivered", 0),
                                            "b@example.test": ("expired", 0),
                                            "c@other.test": ("expired", 0)}
    assert db_store.events.counts(seeded.tx)["queue.purged"] == 2
    assert cli.json("queue", "stats")["pending"] == []
    assert cli.json("messages", "show", seeded.tx)["status"] == "accepted"  # a was delivered


def test_purge_all_and_by_domain_with_yes(cli: CLI, seeded: Seeded, db_store: Store):
    assert cli.json("queue", "purge", "--domain", "other.test", "--yes")["recipients"] == 1
    assert cli.json("queue", "purge", "--all", "--yes")["recipients"] == 1
    assert db_store.queue.pending_count() == 0
    assert cli.json("queue", "purge", "--all")["recipients"] == 0  # nothing to confirm


def test_queue_bad_input(cli: CLI, seeded: Seeded):
    assert "exactly one target" in cli.fail("queue", "retry")
    assert "exactly one target" in cli.fail("queue", "hold", seeded.tx, "--domain", "x.test")
    assert "or --all" in cli.fail("queue", "purge", "--all", seeded.tx, "--yes")
    assert "no message 'nope'" in cli.fail("queue", "hold", "nope")
    assert "no recipient '999999'" in cli.fail("queue", "release", "999999")
    assert "invalid domain" in cli.fail("queue", "retry", "--domain", "-x")
    assert "invalid domain" in cli.fail("queue", "hold", "--domain", "")
    assert "'bounced'" in cli.fail("queue", "list", "--state", "bounced", code=2)


def test_broadcasts_list_and_show_with_rates(cli: CLI, seeded: Seeded, db_store: Store):
    (b,) = cli.json("broadcasts", "list")
    assert (b["name"], b["channel"], b["accepted"], b["delivered"], b["bounced"]) == (
        "May news", "main", 2, 1, 1)
    assert (b["delivered_rate"], b["bounce_rate"], b["open_rate"], b["click_rate"],
            b["unsubscribe_rate"]) == (50.0, 50.0, 0.0, 0.0, 0.0)
    assert cli.json("broadcasts", "list", "--channel", "acme/main", "--since", "1d") == [b]
    assert cli.json("broadcasts", "list", "--since", "2999-01-01") == []
    shown = cli.json("broadcasts", "show", "May news")
    assert shown["id"] == b["id"] and shown["bounced_by_category"] == {"invalid_recipient": 1}
    assert cli.json("broadcasts", "show", b["id"])["name"] == "May news"
    human = cli.ok("broadcasts", "show", "May news").stdout
    assert "delivered_rate       50.0%" in human
    assert "no broadcast 'nope'" in cli.fail("broadcasts", "show", "nope")
    # The hard bounce suppressed the address on the channel.
    sup = cli.json("suppressions", "list", "--channel", seeded.channel_id)
    assert [(s["address"], s["reason"], s["source_message_id"]) for s in sup] == [
        ("e@other.test", "hard_bounce", seeded.bc)]


def test_channel_delete_refused_while_queued_then_forced(cli: CLI, seeded: Seeded,
                                                        db_store: Store):
    assert "queued recipients" in cli.fail("channels", "delete", "acme/main")
    shown = cli.json("channels", "show", "acme/main")
    assert (shown["messages"], shown["pending"]) == (2, 2)
    out = cli.json("channels", "delete", "acme/main", "--force")
    assert out["purged_recipients"] == 2
    assert db_store.queue.pending_count() == 0
