"""Webhook endpoints and their delivery outbox (SPEC §12).

An endpoint belongs to a channel and names the public event types it wants ('' = all). Its
signing secrets are kept as a JSON list ``[{"secret": ..., "expires_at": ...}]``: the newest
first; a rotation keeps the previous secret valid for ``ROTATION_OVERLAP`` so receivers can
switch without losing a delivery (one ``v1=`` per active secret in the signature header).

``webhook_deliveries`` rows are written by ``store/events.add`` in the transaction of the event.
The dispatcher claims due rows per endpoint (``claim_in``: the claim moves ``next_attempt_at``
past a lease, so rows of a dispatcher killed mid-flight come due again by themselves, as
recipients in the queue do), and records each outcome (``finish_in``).
"""

from __future__ import annotations

import json
import secrets as secrets_mod
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

from helo_smtp.errors import UsageError
from helo_smtp.models import uuid7
from helo_smtp.store.events import FEED_COLUMNS, PUBLIC_TYPES

ROTATION_OVERLAP = 86_400.0  # seconds the previous secret stays valid after a rotation
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    channel_id: str
    url: str
    events: tuple[str, ...]  # () = every public type
    secrets: tuple[str, ...]  # active secrets, newest first
    status: str  # enabled | disabled
    disabled_reason: str
    failing_since: float | None
    max_concurrency: int
    created_at: float


def _active(raw: str, now: float) -> tuple[str, ...]:
    return tuple(s["secret"] for s in json.loads(raw)
                 if s.get("expires_at") is None or s["expires_at"] > now)


def _row(r: Any, now: float | None = None) -> Endpoint:
    ev = tuple(e for e in r["events"].split(",") if e)
    return Endpoint(r["id"], r["channel_id"], r["url"], ev,
                    _active(r["secrets"], time.time() if now is None else now), r["status"],
                    r["disabled_reason"], r["failing_since"], int(r["max_concurrency"]),
                    r["created_at"])


def check_types(types: list[str] | None) -> str:
    """The stored form of an event-type filter ('' = all); unknown names are errors."""
    if not types:
        return ""
    bad = sorted(set(types) - set(PUBLIC_TYPES))
    if bad:
        raise UsageError(f"unknown event type '{bad[0]}' (one of {', '.join(PUBLIC_TYPES)})")
    return ",".join(t for t in PUBLIC_TYPES if t in types)


def new_secret() -> str:
    return SECRET_PREFIX + secrets_mod.token_hex(24)


def finish_in(c: sqlite3.Connection, delivery_id: int, state: str, due: float, code: int | None,
              error: str, now: float) -> None:
    """Record one attempt: ``state`` pending (retry at ``due``), delivered or failed."""
    c.execute("UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
              " next_attempt_at = ?, last_code = ?, last_error = ?, updated_at = ?"
              " WHERE id = ? AND state = 'pending'",
              (state, due, code, error[:300], now, delivery_id))


def claim_in(c: sqlite3.Connection, endpoint_id: str, limit: int, lease: float, now: float
             ) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due deliveries of one endpoint, oldest due first, with what the
    payload needs (event columns and the message's tags and metadata)."""
    # The outer due check matters on PostgreSQL with several nodes: a row another node
    # claimed meanwhile is re-checked after its lock is released, no longer due, and skipped.
    ids = [r[0] for r in c.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id IN (SELECT id FROM"
        " webhook_deliveries WHERE endpoint_id = ? AND state = 'pending' AND next_attempt_at"
        " <= ? ORDER BY next_attempt_at LIMIT ?) AND state = 'pending' AND next_attempt_at <= ?"
        " RETURNING id", (now + lease, endpoint_id, now, limit, now))]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = c.execute(
        f"SELECT d.id AS delivery_id, d.attempts, d.created_at AS queued_at, {FEED_COLUMNS}"
        " FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
        f" LEFT JOIN messages m ON m.id = e.message_id WHERE d.id IN ({marks})"
        " ORDER BY d.id", ids).fetchall()
    return [dict(r) for r in rows]


class Webhooks:
    """Endpoints (CLI) and the outbox (dispatcher)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, channel_id: str, url: str, types: list[str] | None = None,
               max_concurrency: int = 4) -> tuple[Endpoint, str]:
        """A new endpoint and its signing secret (shown once)."""
        secret, now = new_secret(), time.time()
        ep_id = str(uuid.uuid4())
        self.db.write(lambda c: c.execute(
            "INSERT INTO webhooks (id, channel_id, url, events, secrets, max_concurrency,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ep_id, channel_id, url, check_types(types), json.dumps([{"secret": secret}]),
             max_concurrency, now)))
        return self.require(ep_id), secret

    def get(self, ref: str) -> Endpoint | None:
        r = self.db.read(lambda c: c.execute("SELECT * FROM webhooks WHERE id = ?",
                                             (ref,)).fetchone())
        return _row(r) if r else None

    def require(self, ref: str) -> Endpoint:
        ep = self.get(ref)
        if ep is None:
            raise UsageError(f"no webhook '{ref}'")
        return ep

    def list(self, channel_id: str | None = None, enabled_only: bool = False) -> list[Endpoint]:
        sql, args = "SELECT * FROM webhooks WHERE 1=1", []
        if channel_id:
            sql, args = sql + " AND channel_id = ?", [channel_id]
        if enabled_only:
            sql += " AND status = 'enabled'"
        now = time.time()
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY created_at", args).fetchall())
        return [_row(r, now) for r in rows]

    def update(self, ref: str, *, url: str | None = None, types: list[str] | None = None,
               enabled: bool | None = None, max_concurrency: int | None = None) -> Endpoint:
        ep = self.require(ref)
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = url
        if types is not None:
            changes["events"] = check_types(types)
        if enabled is not None:  # enabling also forgets the failure streak
            changes.update(status="enabled" if enabled else "disabled", disabled_reason="",
                           failing_since=None)
        if max_concurrency is not None:
            changes["max_concurrency"] = max_concurrency
        sets = [f"{k} = ?" for k in changes]
        args = list(changes.values())
        if sets:
            self.db.write(lambda c: c.execute(
                f"UPDATE webhooks SET {', '.join(sets)} WHERE id = ?", (*args, ep.id)))
        return self.require(ep.id)

    def rotate_secret(self, ref: str, overlap: float = ROTATION_OVERLAP) -> str:
        """A new secret; the current ones stay valid for ``overlap`` seconds."""
        ep, secret, now = self.require(ref), new_secret(), time.time()
        old = [{"secret": s, "expires_at": now + overlap} for s in ep.secrets]
        self.db.write(lambda c: c.execute("UPDATE webhooks SET secrets = ? WHERE id = ?",
                                          (json.dumps([{"secret": secret}, *old]), ep.id)))
        return secret

    def delete(self, ref: str) -> None:
        ep = self.require(ref)

        def fn(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (ep.id,))
            c.execute("DELETE FROM webhooks WHERE id = ?", (ep.id,))
        self.db.write(fn)

    def deliveries(self, ref: str, state: str | None = None, limit: int = 100
                   ) -> list[dict[str, Any]]:
        """The newest deliveries of one endpoint, with their event's id and type."""
        ep = self.require(ref)
        sql = ("SELECT d.id, e.uid AS event_id, e.type, d.state, d.attempts, d.created_at,"
               " d.next_attempt_at, d.last_code, d.last_error FROM webhook_deliveries d"
               " JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = ?")
        args: list[Any] = [ep.id]
        if state:
            sql = sql + " AND d.state = ?"
            args.append(state)
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY d.id DESC LIMIT ?",
                                                (*args, limit)).fetchall())
        return [dict(r) for r in rows]

    def pending_count(self, endpoint_id: str | None = None) -> int:
        sql, args = "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'", []
        if endpoint_id:
            sql, args = sql + " AND endpoint_id = ?", [endpoint_id]
        return self.db.read(lambda c: c.execute(sql, args).fetchone()[0])

    async def claim(self, endpoint_id: str, limit: int, lease: float, now: float
                    ) -> list[dict[str, Any]]:
        return await self.db.awrite(lambda c: claim_in(c, endpoint_id, limit, lease, now))

    async def finish(self, delivery_id: int, state: str, due: float, code: int | None,
                     error: str, now: float) -> None:
        await self.db.awrite(lambda c: finish_in(c, delivery_id, state, due, code, error, now))

    async def endpoint_health(self, endpoint_id: str, ok: bool, now: float,
                              disable_after: float, reason: str = "") -> bool:
        """Track the failure streak; disable the endpoint when told (``reason``) or when it
        has failed for ``disable_after`` seconds. True when it got disabled now."""
        def fn(c: sqlite3.Connection) -> bool:
            if ok:
                c.execute("UPDATE webhooks SET failing_since = NULL WHERE id = ?"
                          " AND failing_since IS NOT NULL", (endpoint_id,))
                return False
            c.execute("UPDATE webhooks SET failing_since = ? WHERE id = ?"
                      " AND failing_since IS NULL", (now, endpoint_id))
            why = reason or "failing for 24 h"
            return c.execute(
                "UPDATE webhooks SET status = 'disabled', disabled_reason = ? WHERE id = ?"
                " AND status = 'enabled' AND (? <> '' OR failing_since <= ?)",
                (why, endpoint_id, reason, now - disable_after)).rowcount > 0
        return await self.db.awrite(fn)

    def test_event_in(self, c: sqlite3.Connection, ep: Endpoint) -> None:
        """Queue one ``test`` delivery to this endpoint (``webhooks test``)."""
        now = time.time()
        eid = c.execute("INSERT INTO events (at, type, channel_id, data, uid) VALUES"
                        " (?, 'webhook.test', ?, '{}', ?) RETURNING id",
                        (now, ep.channel_id, uuid7())).fetchone()[0]
        c.execute("INSERT INTO webhook_deliveries (endpoint_id, event_id, created_at,"
                  " next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                  (ep.id, eid, now, now, now))

    def test(self, ref: str) -> None:
        ep = self.require(ref)
        self.db.write(lambda c: self.test_event_in(c, ep))
