"""The schema as ordered sqlite-utils migrations. Never edit a released step: add a new one.

Tables are STRICT (types enforced). Times are Unix seconds (REAL). The queue's hot index is
partial: only pending, unheld recipients are in it, ordered by due time, so a claim is one short
range scan whatever the number of delivered rows (see ``queue.py``).
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database as UtilsDatabase
from sqlite_utils.migrations import Migrations

migrations = Migrations("helo_smtp")


def _run(db: UtilsDatabase, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@migrations()
def m001_initial(db: UtilsDatabase) -> None:
    _run(db, """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL CHECK (status IN ('active', 'pending', 'forbidden')),
        sends_used INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE domains (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL UNIQUE,
        verified INTEGER NOT NULL DEFAULT 0,
        verified_at REAL,
        verify_token TEXT NOT NULL,
        dkim_selector TEXT NOT NULL,
        dkim_private_key TEXT NOT NULL,
        dkim_public_key TEXT NOT NULL,
        created_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX domains_account ON domains(account_id);
    CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        track_opens INTEGER NOT NULL DEFAULT 0,
        track_links INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        deleted_at REAL,
        UNIQUE (account_id, name)
    ) STRICT;
    CREATE TABLE credentials (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        channel_id TEXT REFERENCES channels(id),
        name TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        revoked_at REAL
    ) STRICT;
    CREATE TABLE suppressions (
        channel_id TEXT NOT NULL REFERENCES channels(id),
        address TEXT NOT NULL,
        reason TEXT NOT NULL
            CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
        created_at REAL NOT NULL,
        source_message_id TEXT,
        PRIMARY KEY (channel_id, address)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE broadcasts (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL REFERENCES channels(id),
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        first_sent_at REAL,
        last_sent_at REAL,
        accepted INTEGER NOT NULL DEFAULT 0,
        suppressed INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        deferred INTEGER NOT NULL DEFAULT 0,
        bounced INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        unique_opens INTEGER NOT NULL DEFAULT 0,
        unique_clicks INTEGER NOT NULL DEFAULT 0,
        unsubscribes INTEGER NOT NULL DEFAULT 0,
        complaints INTEGER NOT NULL DEFAULT 0,
        bounced_by_category TEXT NOT NULL DEFAULT '{}',
        UNIQUE (channel_id, key)
    ) STRICT;
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        channel_id TEXT NOT NULL REFERENCES channels(id),
        mail_type TEXT NOT NULL CHECK (mail_type IN ('transactional', 'broadcast')),
        sender TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]',
        metadata TEXT NOT NULL DEFAULT '{}',
        track_opens INTEGER NOT NULL DEFAULT 0,
        track_links INTEGER NOT NULL DEFAULT 0,
        broadcast_id TEXT REFERENCES broadcasts(id),
        idempotency_key TEXT,
        size INTEGER NOT NULL,
        raw BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('accepted', 'delayed', 'failed')),
        created_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX messages_channel_created ON messages(channel_id, created_at);
    CREATE INDEX messages_created ON messages(created_at);
    CREATE TABLE recipients (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id),
        address TEXT NOT NULL,
        domain TEXT NOT NULL,
        mail_type TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN
            ('queued', 'deferred', 'delivered', 'bounced', 'expired', 'suppressed')),
        held INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        claimed_by TEXT,
        lease_until REAL,
        last_code INTEGER,
        last_status TEXT,
        last_text TEXT,
        last_host TEXT,
        category TEXT,
        updated_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX recipients_message ON recipients(message_id);
    CREATE INDEX recipients_due ON recipients(mail_type, next_attempt_at)
        WHERE state IN ('queued', 'deferred') AND held = 0;
    CREATE INDEX recipients_pending_domain ON recipients(domain)
        WHERE state IN ('queued', 'deferred');
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        recipient_id INTEGER NOT NULL REFERENCES recipients(id),
        message_id TEXT NOT NULL,
        at REAL NOT NULL,
        stage TEXT NOT NULL,
        outcome TEXT NOT NULL,
        remote_host TEXT,
        remote_ip TEXT,
        source_ip TEXT,
        tls INTEGER NOT NULL DEFAULT 0,
        code INTEGER,
        status TEXT,
        text TEXT,
        category TEXT
    ) STRICT;
    CREATE INDEX attempts_recipient ON attempts(recipient_id);
    CREATE INDEX attempts_message ON attempts(message_id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        type TEXT NOT NULL,
        message_id TEXT,
        recipient TEXT,
        channel_id TEXT,
        broadcast_id TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    CREATE INDEX events_message ON events(message_id);
    CREATE INDEX events_type_at ON events(type, at);
    CREATE TABLE idempotency_keys (
        account_id TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        message_id TEXT NOT NULL,
        reply TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (account_id, key)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE engagement (
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('open', 'click', 'unsubscribe')),
        first_at REAL NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (message_id, recipient, kind)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE destinations (
        pool TEXT NOT NULL,
        domain TEXT NOT NULL,
        slow_until REAL NOT NULL DEFAULT 0,
        slow_factor REAL NOT NULL DEFAULT 1,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (pool, domain)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE rate_buckets (
        pool TEXT NOT NULL,
        domain TEXT NOT NULL,
        tat REAL NOT NULL,
        PRIMARY KEY (pool, domain)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE connection_slots (
        pool TEXT NOT NULL,
        domain TEXT NOT NULL,
        slot INTEGER NOT NULL,
        holder TEXT NOT NULL,
        lease_until REAL NOT NULL,
        PRIMARY KEY (pool, domain, slot)
    ) STRICT, WITHOUT ROWID
    """)


@migrations()
def m050_nodes(db: UtilsDatabase) -> None:
    """One heartbeat row per running node (``store/nodes.py``): liveness and identity."""
    _run(db, """
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        instance TEXT NOT NULL,
        host TEXT NOT NULL,
        place TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        seen_at REAL NOT NULL
    ) STRICT, WITHOUT ROWID
    """)


@migrations()
def m060_retention_limits_test(db: UtilsDatabase) -> None:
    """Issue #22: send limits per channel (counters shared by every node), test-mode
    credentials and messages, and retention's mark for a message whose body was dropped."""
    _run(db, M060)


#: The same statements as ``pg_schema.M060`` (types spelled for SQLite).
M060 = """
    ALTER TABLE channels ADD COLUMN hourly_limit INTEGER;
    ALTER TABLE channels ADD COLUMN daily_limit INTEGER;
    ALTER TABLE credentials ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN body_purged_at REAL;
    CREATE INDEX messages_body_kept ON messages(created_at) WHERE body_purged_at IS NULL;
    CREATE INDEX idempotency_keys_message ON idempotency_keys(message_id);
    CREATE TABLE send_counters (
        scope TEXT NOT NULL,
        period TEXT NOT NULL,
        start REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (scope, period)
    ) STRICT, WITHOUT ROWID
"""


@migrations()
def m070_events_webhooks(db: UtilsDatabase) -> None:
    """Public event ids, webhook endpoints and their durable delivery outbox (SPEC §12)."""
    _run(db, """
    ALTER TABLE events ADD COLUMN uid TEXT;
    CREATE INDEX events_at ON events(at);
    CREATE INDEX events_recipient ON events(recipient, at);
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL DEFAULT '',
        secrets TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
        disabled_reason TEXT NOT NULL DEFAULT '',
        failing_since REAL,
        max_concurrency INTEGER NOT NULL DEFAULT 4,
        created_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX webhooks_channel ON webhooks(channel_id);
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        endpoint_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        last_code INTEGER,
        last_error TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(endpoint_id, next_attempt_at)
        WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at)
    """)


@migrations()
def m080_api_keys(db: UtilsDatabase) -> None:
    """HTTP send API keys (SPEC §11): the id finds the row, the secret only as a hash."""
    _run(db, """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        channel_id TEXT REFERENCES channels(id),
        name TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        last_used_at REAL,
        revoked_at REAL
    ) STRICT
    """)


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations on ``conn``; returns the names applied."""
    db = UtilsDatabase(conn)
    pending = [m.name for m in migrations.pending(db)]
    migrations.apply(db)
    return pending


def applied(conn: sqlite3.Connection) -> list[str]:
    return [m.name for m in migrations.applied(UtilsDatabase(conn))]
