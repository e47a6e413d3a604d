"""Operator queries and queue steering for the CLI: messages, attempts, queue statistics,
retry / hold / release / purge.

They run while the daemon runs, on the same SQLite file (WAL: reads never wait for the writer)
and take effect without a restart: a retried row is due now and a released row is claimable
again, and the workers pick them up on their next poll of ``queue.next_due``. Rows leased to a
worker (a delivery in flight, ``lease_until`` in the future) are never made due again here, so
a retry cannot start a second delivery of the same recipient.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import helo_smtp.store.events as events
import helo_smtp.store.queue as queue

PENDING = "r.state IN ('queued', 'deferred')"
_MESSAGE_COLUMNS = ("m.id, m.account_id, a.name AS account, m.channel_id, ch.name AS channel,"
                    " m.mail_type, m.sender, m.subject, m.tags, m.metadata, m.track_opens,"
                    " m.track_links, m.broadcast_id, m.idempotency_key, m.size, m.status,"
                    " m.created_at")


@dataclass(frozen=True, slots=True)
class Target:
    """Which pending recipients a steering command acts on (exactly one field set)."""

    message_id: str | None = None
    recipient_id: int | None = None
    domain: str | None = None
    all: bool = False

    def where(self) -> tuple[str, tuple[Any, ...]]:
        if self.recipient_id is not None:
            return "r.id = ?", (self.recipient_id,)
        if self.message_id is not None:
            return "r.message_id = ?", (self.message_id,)
        if self.domain is not None:
            return "r.domain = ?", (self.domain.lower().rstrip("."),)
        if self.all:
            return "1 = 1", ()
        raise ValueError("empty queue target")


_FLAGS = ("held", "tls", "track_opens", "track_links")  # 0/1 columns shown as booleans
_JSON = ("tags", "metadata")


def _dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    for k in _FLAGS:
        if k in d and d[k] is not None:
            d[k] = bool(d[k])
    for k in _JSON:
        if isinstance(d.get(k), str):
            d[k] = json.loads(d[k])
    return d


def _dicts(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    return [_dict(r) for r in rows]


def _counts(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


class Admin:
    def __init__(self, db: Any) -> None:
        self.db = db

    # ---- messages ------------------------------------------------------------------------
    def messages(self, *, channel_id: str | None = None, status: str | None = None,
                 since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ["1 = 1"], []
        for cond, value in (("m.channel_id = ?", channel_id), ("m.status = ?", status),
                            ("m.created_at >= ?", since)):
            if value is not None:
                where.append(cond)
                args.append(value)
        sql = (f"SELECT {_MESSAGE_COLUMNS}, (SELECT count(*) FROM recipients r"
               "  WHERE r.message_id = m.id) AS recipients"
               " FROM messages m JOIN channels ch ON ch.id = m.channel_id"
               " JOIN accounts a ON a.id = m.account_id"
               f" WHERE {' AND '.join(where)} ORDER BY m.created_at DESC LIMIT ?")
        return _dicts(self.db.read(lambda c: c.execute(sql, (*args, limit)).fetchall()))

    def message(self, message_id: str) -> dict[str, Any] | None:
        """The message row without its bytes, with account and channel names."""
        r = self.db.read(lambda c: c.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m JOIN channels ch ON ch.id = m.channel_id"
            " JOIN accounts a ON a.id = m.account_id WHERE m.id = ?", (message_id,)).fetchone())
        return _dict(r) if r else None

    def recipients(self, message_id: str) -> list[dict[str, Any]]:
        return _dicts(self.db.read(lambda c: c.execute(
            "SELECT id, address, domain, state, held, attempts, next_attempt_at, expires_at,"
            " last_code, last_status, last_text, last_host, category, updated_at"
            " FROM recipients WHERE message_id = ? ORDER BY id", (message_id,)).fetchall()))

    def attempts(self, message_id: str) -> list[dict[str, Any]]:
        return _dicts(self.db.read(lambda c: c.execute(
            "SELECT t.id, t.recipient_id, r.address, t.at, t.stage, t.outcome, t.remote_host,"
            " t.remote_ip, t.source_ip, t.tls, t.code, t.status, t.text, t.category"
            " FROM attempts t JOIN recipients r ON r.id = t.recipient_id"
            " WHERE t.message_id = ? ORDER BY t.at, t.id", (message_id,)).fetchall()))

    # ---- queue ---------------------------------------------------------------------------
    def queue_stats(self, now: float | None = None, top_domains: int = 20) -> dict[str, Any]:
        """Counts per (mail type, state), pending, due and held counts and the oldest pending
        message's age per mail type, and the busiest destination domains (slowed
        destinations are in ``store.destinations``). SQL that runs on SQLite and PostgreSQL."""
        now = time.time() if now is None else now
        stats = self.db.read(lambda c: {
            "by_state": _counts(c.execute(
                "SELECT mail_type, state, count(*) AS count FROM recipients"
                " GROUP BY mail_type, state ORDER BY mail_type, state").fetchall()),
            "pending": _counts(c.execute(
                "SELECT r.mail_type, count(*) AS pending, sum(r.held) AS held,"
                " sum(CASE WHEN r.held = 0 AND r.next_attempt_at <= ? THEN 1 ELSE 0 END)"
                " AS due, min(m.created_at) AS oldest_at FROM recipients r"
                f" JOIN messages m ON m.id = r.message_id WHERE {PENDING}"
                " GROUP BY r.mail_type ORDER BY r.mail_type", (now,)).fetchall()),
            "domains": _counts(c.execute(
                "SELECT r.domain, count(*) AS pending,"
                " sum(CASE WHEN r.state = 'queued' THEN 1 ELSE 0 END) AS queued,"
                " sum(CASE WHEN r.state = 'deferred' THEN 1 ELSE 0 END) AS deferred,"
                " sum(r.held) AS held, min(m.created_at) AS oldest_at FROM recipients r"
                f" JOIN messages m ON m.id = r.message_id WHERE {PENDING}"
                " GROUP BY r.domain ORDER BY count(*) DESC, r.domain LIMIT ?",
                (top_domains,)).fetchall()),
        })
        for row in stats["pending"] + stats["domains"]:
            row["oldest_age"] = now - row["oldest_at"]
        return stats

    def queue_list(self, *, state: str | None = None, domain: str | None = None,
                   channel_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Pending recipients, soonest due first. ``state``: queued, deferred or held."""
        where, args = [PENDING], []
        if state == "held":
            where.append("r.held = 1")
        elif state:
            where.append("r.state = ?")
            args.append(state)
        if domain:
            where.append("r.domain = ?")
            args.append(domain.lower().rstrip("."))
        if channel_id:
            where.append("m.channel_id = ?")
            args.append(channel_id)
        sql = ("SELECT r.id, r.message_id, r.address, r.domain, r.mail_type, r.state, r.held,"
               " r.attempts, r.next_attempt_at, r.expires_at, r.lease_until, r.last_code,"
               " r.last_status, r.last_text, m.channel_id, ch.name AS channel, m.created_at"
               " FROM recipients r JOIN messages m ON m.id = r.message_id"
               " JOIN channels ch ON ch.id = m.channel_id"
               f" WHERE {' AND '.join(where)} ORDER BY r.next_attempt_at, r.id LIMIT ?")
        return _dicts(self.db.read(lambda c: c.execute(sql, (*args, limit)).fetchall()))

    def recipient_exists(self, recipient_id: int) -> bool:
        return self.db.read(lambda c: c.execute(
            "SELECT 1 FROM recipients WHERE id = ?", (recipient_id,)).fetchone()) is not None

    def count_pending(self, target: Target) -> int:
        where, args = target.where()
        return self.db.read(lambda c: c.execute(
            f"SELECT count(*) FROM recipients r WHERE {PENDING} AND {where}", args).fetchone()[0])

    def retry(self, target: Target, now: float | None = None) -> int:
        """Make matching unheld, unleased pending recipients due now."""
        t = time.time() if now is None else now
        return self.db.write(lambda c: _steer(
            c, target, "r.held = 0 AND (r.lease_until IS NULL OR r.lease_until <= ?)", (t,),
            "next_attempt_at = ?", (t,), "queue.retried"))

    def hold(self, target: Target) -> int:
        """Held rows stay pending but are never claimed (the claim and next_due skip them)."""
        return self.db.write(lambda c: _steer(c, target, "r.held = 0", (), "held = 1", (),
                                              "queue.held"))

    def release(self, target: Target) -> int:
        """Back to normal scheduling, due at their retry time as before."""
        return self.db.write(lambda c: _steer(c, target, "r.held = 1", (), "held = 0", (),
                                              "queue.released"))

    def purge(self, target: Target, reason: str = "purged by operator") -> int:
        """End delivery of matching pending recipients (recorded as expired, with events)."""
        where, args = target.where()

        def fn(c: sqlite3.Connection) -> int:
            ids = [r[0] for r in c.execute(
                f"SELECT r.id FROM recipients r WHERE {PENDING} AND {where}", args)]
            queue.purge_ids(c, ids, reason=reason)
            return len(ids)

        return self.db.write(fn)

    # ---- summaries -----------------------------------------------------------------------
    def channel_counts(self, channel_id: str) -> dict[str, int]:
        row = self.db.read(lambda c: c.execute(
            "SELECT (SELECT count(*) FROM messages WHERE channel_id = ?) AS messages,"
            " (SELECT count(*) FROM recipients r JOIN messages m ON m.id = r.message_id"
            f"   WHERE m.channel_id = ? AND {PENDING}) AS pending,"
            " (SELECT count(*) FROM suppressions WHERE channel_id = ?) AS suppressions,"
            " (SELECT count(*) FROM credentials WHERE channel_id = ?"
            "   AND revoked_at IS NULL) AS credentials", (channel_id,) * 4).fetchone())
        return dict(row)


def _steer(c: sqlite3.Connection, target: Target, cond: str, cond_args: tuple[Any, ...],
           set_sql: str, set_args: tuple[Any, ...], event: str) -> int:
    """Update the matching pending rows and record one event per recipient."""
    where, args = target.where()
    rows = c.execute(
        "SELECT r.id, r.message_id, r.address, m.channel_id FROM recipients r"
        f" JOIN messages m ON m.id = r.message_id WHERE {PENDING} AND {where} AND {cond}",
        (*args, *cond_args)).fetchall()
    c.executemany(f"UPDATE recipients SET {set_sql} WHERE id = ?",
                  [(*set_args, r["id"]) for r in rows])
    for r in rows:
        events.add(c, event, message_id=r["message_id"], recipient=r["address"],
                   channel_id=r["channel_id"])
    return len(rows)
