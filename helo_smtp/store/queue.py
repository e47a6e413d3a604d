"""The queue: where inbound and outbound meet, as Postfix daemons meet only in the queue.

Each recipient moves ``queued -> (deferred)* -> delivered | bounced | expired``; ``suppressed``
is recorded at accept time and never delivered.

Claims use a lease. Claiming sets ``claimed_by``, ``lease_until`` and moves ``next_attempt_at``
to the lease end, so a row whose worker died or hangs simply becomes due again when the lease
lapses: no sweeper, no failure counted (``attempts`` grows only when an outcome is recorded).
Due retries and fresh mail sit in one partial index ordered by due time, so neither starves and
a claim is one short index range scan whatever the queue holds.

On PostgreSQL several relay nodes share this queue: a claim locks its rows with ``FOR UPDATE
SKIP LOCKED`` (two nodes never lease the same recipient; neither waits for the other), and
``notify_in`` tells the other nodes at COMMIT that work is due (LISTEN/NOTIFY, ``Queue.listen``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import helo_smtp.store.backlog as backlog
import helo_smtp.store.broadcasts as broadcasts
import helo_smtp.store.events as events
import helo_smtp.store.limits as limits
import helo_smtp.store.pg_queue as pg_queue
import helo_smtp.store.suppressions as suppressions
import helo_smtp.store.testmode as testmode
from helo_smtp.errors import SendLimitExceeded
from helo_smtp.models import (
    SUPPRESSING_CATEGORIES,
    ClaimedRecipient,
    DeliveryResult,
    MailType,
    NewMessage,
    RecipientState,
    StoredMessage,
    SuppressionReason,
    address_domain,
    stored_message,
)
from helo_smtp.store.db import dialect
from helo_smtp.store.idempotency import EnqueueResult, claim_idempotency
from helo_smtp.store.recent import RecentMessages
from helo_smtp.store.status import refresh_status_in

PENDING_SEND_LIMIT = 1000
QUEUE_CHANNEL = "helo_queue"  # PostgreSQL NOTIFY channel; the payload is the mail type

_EVENT_FOR_STATE = {
    RecipientState.DELIVERED: "delivery.delivered",
    RecipientState.DEFERRED: "delivery.deferred",
    RecipientState.BOUNCED: "delivery.bounced",
    RecipientState.EXPIRED: "message.expired",
}


def _charge_sends(c: sqlite3.Connection, account_id: str, n: int) -> None:
    """Count recipient-sends; a pending account may make 1,000 in total (Helo's free limit).

    Add first, then check what the UPDATE returns: the row lock makes concurrent charges (other
    nodes) take turns, and raising rolls the addition back with the rest of the message.
    """
    [row] = c.execute("UPDATE accounts SET sends_used = sends_used + ? WHERE id = ?"
                      " RETURNING status, sends_used", (n, account_id)).fetchall()
    if row["status"] == "pending" and row["sends_used"] > PENDING_SEND_LIMIT:
        raise SendLimitExceeded()


def notify_in(c: sqlite3.Connection, mail_type: MailType | str) -> None:
    """Tell every node that work of this type may be due (PostgreSQL NOTIFY, sent with the
    COMMIT). On SQLite there is one process and the daemon wakes its own worker: no-op."""
    notify = getattr(c, "notify", None)
    if notify is not None:
        notify(QUEUE_CHANNEL, MailType(mail_type).value)


def enqueue_in(c: sqlite3.Connection, msg: NewMessage, lifetime: float) -> EnqueueResult:
    """Commit a message, its recipients, its idempotency key and its events (one transaction).

    The shared counters (the broadcast's, then the account's) are updated last, always in that
    order: their row locks, which every message of that broadcast or account needs, are then
    held only until COMMIT, and never taken in opposite orders (no deadlocks across nodes).
    """
    replay = claim_idempotency(c, msg)
    if replay is not None:
        return replay
    now = msg.created_at
    bid = None
    if msg.mail_type == MailType.BROADCAST and msg.broadcast_key:
        bid = broadcasts.upsert_in(c, msg.channel_id, msg.broadcast_key,
                                   msg.broadcast_name or msg.broadcast_key, now)
    c.execute(
        "INSERT INTO messages (id, account_id, channel_id, mail_type, sender, subject, tags,"
        " metadata, track_opens, track_links, broadcast_id, idempotency_key, size, raw, status,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?)",
        (msg.id, msg.account_id, msg.channel_id, msg.mail_type.value, msg.sender, msg.subject,
         json.dumps(msg.tags), json.dumps(msg.metadata), int(msg.track_opens),
         int(msg.track_links), bid, msg.idempotency_key, len(msg.raw), msg.raw, now))
    rows = [(msg.id, a, address_domain(a), msg.mail_type.value, "queued", now, now + lifetime,
             now) for a in msg.recipients]
    rows += [(msg.id, a, address_domain(a), msg.mail_type.value, "suppressed", now, now, now)
             for a in msg.suppressed]
    c.executemany(
        "INSERT INTO recipients (message_id, address, domain, mail_type, state,"
        " next_attempt_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    events.add(c, "message.received", message_id=msg.id, channel_id=msg.channel_id,
               broadcast_id=bid, at=now, mail_type=msg.mail_type.value,
               recipients=len(msg.recipients), suppressed=len(msg.suppressed), tags=msg.tags,
               metadata=msg.metadata, size=len(msg.raw))
    for a in msg.recipients:
        events.add(c, "recipient.accepted", message_id=msg.id, recipient=a,
                   channel_id=msg.channel_id, broadcast_id=bid, at=now)
    for a in msg.suppressed:
        events.add(c, "recipient.suppressed", message_id=msg.id, recipient=a,
                   channel_id=msg.channel_id, broadcast_id=bid, at=now)
    if msg.recipients:
        notify_in(c, msg.mail_type)
    if bid:
        broadcasts.bump_in(c, bid, accepted=len(msg.recipients), suppressed=len(msg.suppressed))
    if msg.test:  # SPEC §15: outcomes simulated now, nothing queued, nothing charged
        testmode.simulate_in(c, msg, bid, record_in)
        return EnqueueResult(msg.id, msg.reply, False, bid)
    limits.charge_in(c, msg.channel_id, len(msg.recipients), now)
    _charge_sends(c, msg.account_id, len(msg.recipients))
    return EnqueueResult(msg.id, msg.reply, False, bid)


def _claimed(r: sqlite3.Row) -> ClaimedRecipient:
    return ClaimedRecipient(r["id"], r["message_id"], r["address"], r["domain"],
                            MailType(r["mail_type"]), r["attempts"], r["expires_at"],
                            r["channel_id"], r["account_id"], r["sender"], r["broadcast_id"],
                            r["created_at"])


_CLAIM_COLUMNS = ("r.id, r.message_id, r.address, r.domain, r.mail_type, r.attempts,"
                  " r.expires_at, m.channel_id, m.account_id, m.sender, m.broadcast_id,"
                  " m.created_at")


def claim_in(c: sqlite3.Connection, mail_type: MailType, limit: int, node: str,
             lease: float, now: float, skip: Sequence[str] = (), since: float = 0.0
             ) -> list[ClaimedRecipient]:
    """Lease up to ``limit`` due recipients of one mail type, oldest due first, none of
    them at a domain in ``skip`` (domains whose groups already wait: outbound/gates.py) and
    none due before ``since`` (``first_due``: where the rows outside ``skip`` begin)."""
    if dialect(c) == "postgresql":  # several nodes: see pg_queue
        rows = pg_queue.claim_skip_locked(c, mail_type.value, limit, node, lease, now,
                                          _CLAIM_COLUMNS, skip, since)
        return sorted((_claimed(r) for r in rows), key=lambda r: (r.message_id, r.domain, r.id))
    ids = [r[0] for r in c.execute(
        "UPDATE recipients SET claimed_by = ?, lease_until = ?, next_attempt_at = ?"
        " WHERE id IN (SELECT id FROM recipients WHERE mail_type = ?"
        " AND state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= ?"
        f" AND next_attempt_at >= ?{pg_queue.not_in(skip)} ORDER BY next_attempt_at LIMIT ?)"
        " RETURNING id",
        (node, now + lease, now + lease, mail_type.value, now, since, *skip, limit))]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = c.execute(
        f"SELECT {_CLAIM_COLUMNS} FROM recipients r JOIN messages m ON m.id = r.message_id"
        f" WHERE r.id IN ({marks}) ORDER BY r.message_id, r.domain, r.id", ids).fetchall()
    return [_claimed(r) for r in rows]


def release_in(c: sqlite3.Connection, ids: Sequence[int], due_at: float) -> None:
    """Give leased rows back without an attempt (pacing, shutdown): due again at ``due_at``."""
    c.executemany("UPDATE recipients SET claimed_by = NULL, lease_until = NULL,"
                  " next_attempt_at = ? WHERE id = ? AND state IN ('queued', 'deferred')",
                  [(due_at, i) for i in ids])
    if dialect(c) == "postgresql":  # due again: another node may take them
        marks = ",".join("?" * len(ids))
        for r in c.execute(f"SELECT DISTINCT mail_type FROM recipients WHERE id IN ({marks})",
                           list(ids)).fetchall():
            notify_in(c, r[0])


def _apply_result(c: sqlite3.Connection, res: DeliveryResult, attempt: bool = True
                  ) -> tuple[str, str, bool] | None:
    """Record one outcome; (message id, channel id, whether the message's status may have
    changed), or None when the recipient was already final (a late duplicate outcome: history
    stays as it was). Every statement here runs for every delivery, so there are few: the
    UPDATE returns what the event needs, and the claim's channel and broadcast are reused.
    ``attempt=False`` (a purge): no delivery was tried; attempts and their history stay."""
    due = res.next_attempt_at if res.state == RecipientState.DEFERRED else res.at
    category = res.category.value if res.category else None
    row = c.execute(
        "UPDATE recipients SET state = ?, attempts = attempts + ?, next_attempt_at = ?,"
        " claimed_by = NULL, lease_until = NULL, last_code = ?, last_status = ?, last_text = ?,"
        " last_host = ?, category = ?, updated_at = ?"
        " WHERE id = ? AND state IN ('queued', 'deferred')"
        " RETURNING address, message_id, attempts",
        (res.state.value, int(attempt), due, res.code, res.status, res.text, res.remote_host,
         category, res.at, res.recipient_id)).fetchone()
    if row is None:
        return None
    message_id = row["message_id"]
    # attempts grows only here, so the first recorded outcome is the one leaving 'queued'
    first = row["attempts"] == int(attempt)
    channel_id, broadcast_id = res.channel_id, res.broadcast_id
    if channel_id is None:
        m = c.execute("SELECT channel_id, broadcast_id FROM messages WHERE id = ?",
                      (message_id,)).fetchone()
        channel_id, broadcast_id = m["channel_id"], m["broadcast_id"]
    if attempt:
        c.execute(
            "INSERT INTO attempts (recipient_id, message_id, at, stage, outcome, remote_host,"
            " remote_ip, source_ip, tls, code, status, text, category)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (res.recipient_id, message_id, res.at, res.stage, res.state.value,
             res.remote_host, res.remote_ip, res.source_ip, int(res.tls), res.code, res.status,
             res.text, category))
    events.add(c, _EVENT_FOR_STATE[res.state], message_id=message_id,
               recipient=row["address"], channel_id=channel_id,
               broadcast_id=broadcast_id, at=res.at, code=res.code, status=res.status,
               category=category, host=res.remote_host, text=res.text)
    if (res.state == RecipientState.BOUNCED and res.category in SUPPRESSING_CATEGORIES
            and res.stage != testmode.STAGE):  # a simulated bounce suppresses nothing
        suppressions.add_in(c, channel_id, row["address"], SuppressionReason.HARD_BOUNCE,
                            message_id)
    if broadcast_id:
        broadcasts.count_outcome_in(c, broadcast_id, res, first=first)
    # queued -> delivered never changes Helo's status (accepted stays accepted, delayed stays
    # delayed: the deferred recipients are untouched); anything else may.
    return message_id, channel_id, not (first and res.state == RecipientState.DELIVERED)


def record_in(c: sqlite3.Connection, results: Iterable[DeliveryResult]) -> None:
    touched: set[str] = set()
    for res in results:
        hit = _apply_result(c, res)
        if hit and hit[2]:
            touched.add(hit[0])
    for mid in touched:
        refresh_status_in(c, mid)


def purge_ids(c: sqlite3.Connection, ids: Sequence[int], reason: str) -> None:
    """Remove pending recipients from delivery (recorded as expired, with an event)."""
    now = time.time()
    for rid in ids:
        res = DeliveryResult(rid, RecipientState.EXPIRED, "purge", f"purged: {reason}", at=now)
        hit = _apply_result(c, res, attempt=False)
        if hit:
            events.add(c, "queue.purged", message_id=hit[0], channel_id=hit[1], at=now,
                       reason=reason)
            refresh_status_in(c, hit[0])


class Queue:
    """The queue interface used by the inbound handler and the delivery workers."""

    def __init__(self, db: Any, lifetimes: dict[MailType, float]) -> None:
        self.db = db
        self.lifetimes = dict(lifetimes)  # its own: a reload updates it in place
        self.recent = RecentMessages()

    async def enqueue(self, msg: NewMessage) -> EnqueueResult:
        """Commit the message and keep it in ``recent`` for its first delivery in this
        process; resolves only when the COMMIT is on disk."""
        result = await self.commit(msg)
        if not result.replayed and msg.recipients and not msg.test:
            self.recent.add(stored_message(msg, result.broadcast_id))
        return result

    async def commit(self, msg: NewMessage) -> EnqueueResult:
        """Commit the message; resolves only when the COMMIT is on disk. Who delivers it is
        told by the caller (``inbound/handler.py``: its ``committed`` hook)."""
        lifetime = self.lifetimes[msg.mail_type]
        return await self.db.awrite(lambda c: enqueue_in(c, msg, lifetime))

    async def claim(self, mail_type: MailType, limit: int, node: str, lease: float,
                    now: float | None = None, skip: Sequence[str] = (), since: float = 0.0
                    ) -> list[ClaimedRecipient]:
        t = time.time() if now is None else now
        return await self.db.awrite(lambda c: claim_in(c, mail_type, limit, node, lease, t,
                                                       skip, since))

    def first_due(self, mail_type: MailType, skip: Sequence[str], now: float | None = None
                  ) -> float | None:
        """``store/backlog.py``: where the due rows outside ``skip`` begin."""
        return backlog.first_due(self.db, mail_type, skip, time.time() if now is None else now)

    async def record(self, results: Sequence[DeliveryResult]) -> None:
        if results:
            await self.db.awrite(lambda c: record_in(c, results))

    async def release(self, ids: Sequence[int], due_at: float) -> None:
        if ids:
            await self.db.awrite(lambda c: release_in(c, ids, due_at))

    async def extend(self, ids: Sequence[int], node: str, until: float) -> None:
        """Renew leases still held by ``node`` (long deliveries)."""
        if ids:
            await self.db.awrite(lambda c: c.executemany(
                "UPDATE recipients SET lease_until = ?, next_attempt_at = ? WHERE id = ?"
                " AND claimed_by = ? AND state IN ('queued', 'deferred')",
                [(until, until, i, node) for i in ids]))

    def make_due(self, mail_type: MailType | None = None, now: float | None = None) -> int:
        """Make deferred, unleased recipients due now, recording nothing (tests move time
        with it instead of sleeping; operators use ``admin.retry``, which logs an event)."""
        t = time.time() if now is None else now
        sql = ("UPDATE recipients SET next_attempt_at = ? WHERE state = 'deferred'"
               " AND held = 0 AND (lease_until IS NULL OR lease_until <= ?)")
        args: tuple[Any, ...] = (t, t)
        if mail_type is not None:
            sql += " AND mail_type = ?"
            args += (MailType(mail_type).value,)
        return self.db.write(lambda c: c.execute(sql, args).rowcount)

    def release_node(self, node: str) -> int:
        """At start: this node's old leases are void (its previous process is gone).

        With several nodes on one database every node needs its own ``node_id``: this frees
        every lease held under that name.
        """
        now = time.time()
        return self.db.write(lambda c: c.execute(
            "UPDATE recipients SET claimed_by = NULL, lease_until = NULL,"
            " next_attempt_at = CASE WHEN next_attempt_at < ? THEN next_attempt_at ELSE ? END"
            " WHERE claimed_by = ? AND state IN ('queued', 'deferred')",
            (now, now, node)).rowcount)

    async def listen(self, wake: Callable[[MailType], None]) -> None:
        """Until cancelled, call ``wake(mail_type)`` when any node queues or releases work of
        that type, and for every type on (re)connecting, since notices sent while the listener
        was away are lost. A PostgreSQL store only; on SQLite it returns at once."""
        listen = getattr(self.db, "listen", None)
        if listen is None:
            return

        def on_notice(payload: str) -> None:
            if payload in MailType._value2member_map_:
                wake(MailType(payload))

        def on_connect() -> None:
            for mt in MailType:
                wake(mt)

        await listen(QUEUE_CHANNEL, on_notice, on_connect)

    def load_message(self, message_id: str) -> StoredMessage | None:
        """The message as committed: from ``recent`` when it was accepted here lately."""
        hit = self.recent.get(message_id)
        if hit is not None:
            return hit
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone())
        if r is None:
            return None
        return StoredMessage(r["id"], r["account_id"], r["channel_id"], MailType(r["mail_type"]),
                             r["sender"], r["raw"], bool(r["track_opens"]),
                             bool(r["track_links"]), r["broadcast_id"], json.loads(r["tags"]),
                             json.loads(r["metadata"]), r["created_at"])

    def message_raw(self, message_id: str) -> bytes:
        return self.db.read(lambda c: c.execute(
            "SELECT raw FROM messages WHERE id = ?", (message_id,)).fetchone()[0])

    def pending_count(self, mail_type: MailType | None = None) -> int:
        sql = "SELECT count(*) FROM recipients WHERE state IN ('queued', 'deferred')"
        args: tuple[Any, ...] = ()
        if mail_type:
            sql += " AND mail_type = ?"
            args = (mail_type.value,)
        return self.db.read(lambda c: c.execute(sql, args).fetchone()[0])

    def pending_by_type(self) -> dict[MailType, int]:
        """``store/backlog.py``: pending recipients not held, per mail type."""
        return backlog.pending_by_type(self.db)

    def next_due(self, mail_type: MailType) -> float | None:
        """When the earliest pending recipient of this type is due (None: queue empty)."""
        row = self.db.read(lambda c: c.execute(
            "SELECT min(next_attempt_at) FROM recipients WHERE mail_type = ?"
            " AND state IN ('queued', 'deferred') AND held = 0", (mail_type.value,)).fetchone())
        return row[0]

    def depth_by_type(self) -> dict[str, tuple[int, float | None]]:
        """mail type -> (pending recipients, creation time of the oldest), for metrics."""
        out: dict[str, tuple[int, float | None]] = {}
        for mt in MailType:
            row = self.db.read(lambda c, mt=mt: c.execute(
                "SELECT count(*), min(expires_at) FROM recipients WHERE mail_type = ?"
                " AND state IN ('queued', 'deferred')", (mt.value,)).fetchone())
            oldest = row[1] - self.lifetimes[mt] if row[1] is not None else None
            out[mt.value] = (row[0], oldest)
        return out

    def accounting(self) -> dict[str, int]:
        """Recipients per state: the invariant accepted = sum of these holds by construction."""
        rows = self.db.read(lambda c: c.execute(
            "SELECT state, count(*) FROM recipients GROUP BY state").fetchall())
        return {r[0]: r[1] for r in rows}
