"""The store: the only place with SQL. One narrow interface (``Store``) over the database, so a
PostgreSQL implementation can stand behind the same methods."""

from __future__ import annotations

import sqlite3

from helo_smtp.config import Config
from helo_smtp.errors import ConfigError
from helo_smtp.models import MailType
from helo_smtp.ports import Backend
from helo_smtp.store import pg_schema, retention, schema
from helo_smtp.store.accounts import Accounts
from helo_smtp.store.admin import Admin
from helo_smtp.store.apikeys import ApiKeys
from helo_smtp.store.broadcasts import Broadcasts
from helo_smtp.store.channels import Channels
from helo_smtp.store.credentials import Credentials
from helo_smtp.store.db import CorruptDatabase, Database
from helo_smtp.store.destinations import Destinations
from helo_smtp.store.domains import Domains
from helo_smtp.store.engagement import Engagement
from helo_smtp.store.events import Events
from helo_smtp.store.groupcommit import connect
from helo_smtp.store.limits import Limits
from helo_smtp.store.nodes import Nodes
from helo_smtp.store.queue import Queue
from helo_smtp.store.retention import Retention
from helo_smtp.store.settings import Settings
from helo_smtp.store.submission import StoreSubmission
from helo_smtp.store.suppressions import Suppressions
from helo_smtp.store.throttle import Throttle
from helo_smtp.store.webhooks import Webhooks

__all__ = ["CorruptDatabase", "Store", "lifetimes", "migrate"]

DEFAULT_LIFETIMES = {MailType.TRANSACTIONAL: 432_000.0, MailType.BROADCAST: 172_800.0}


def lifetimes(cfg: Config) -> dict[MailType, float]:
    """How long each mail type may stay queued (``[delivery] *_lifetime``)."""
    return {MailType.TRANSACTIONAL: cfg.delivery.transactional_lifetime,
            MailType.BROADCAST: cfg.delivery.broadcast_lifetime}


def migrate(path: str) -> list[str]:
    """Create or upgrade the schema; returns the steps applied. Safe to run again.

    ``path`` is a SQLite file, or a ``postgresql://`` URL (then ``pg_schema`` is applied).
    """
    if pg_schema.is_postgres_url(path):
        from helo_smtp.store.pg import migrate as pg_migrate

        return pg_migrate(_require_psycopg(path))
    try:
        retention.prepare_new_file(path)  # incremental auto-vacuum: purges give space back
        conn = connect(path)
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(f"{path}: not a usable database ({exc}); restore from backup "
                              "or move it aside") from None
    try:
        return schema.apply(conn)
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(f"{path}: database is corrupt ({exc}); restore from backup "
                              "or move it aside") from None
    finally:
        conn.close()


def _require_psycopg(url: str) -> str:
    """``url`` back, once we know the PostgreSQL driver is installed."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise ConfigError("server.database is a PostgreSQL URL but psycopg is not installed: "
                          "pip install 'helo-smtp[postgres]'") from None
    return url


class Store:
    """Everything the relay and the CLI keep. Open with ``Store.open(path)``."""

    def __init__(self, db: Database, lifetimes: dict[MailType, float] | None = None) -> None:
        self.db = db
        self.accounts = Accounts(db)
        self.domains = Domains(db)
        self.channels = Channels(db)
        self.credentials = Credentials(db)
        self.api_keys = ApiKeys(db)
        self.suppressions = Suppressions(db)
        self.broadcasts = Broadcasts(db)
        self.events = Events(db)
        self.settings = Settings(db)
        self.queue = Queue(db, lifetimes or DEFAULT_LIFETIMES)
        self.admin = Admin(db)  # operator queries and queue steering (the CLI)
        self.engagement = Engagement(db)
        self.destinations = Destinations(db)
        self.throttle = Throttle(db)  # pacing and connection caps shared by all nodes
        self.limits = Limits(db)  # per-channel send limits (SPEC §15)
        self.retention = Retention(db)  # dropping old bodies and history (SPEC §15)
        self.nodes = Nodes(db)  # heartbeats: which nodes are alive, under which names
        self.webhooks = Webhooks(db)  # endpoints and their delivery outbox (SPEC §12)
        # The ports (``helo_smtp/ports.py``): the backend's capabilities, and the door's view.
        self.backend: Backend = db
        self.submission = StoreSubmission(db, self.credentials, self.accounts, self.channels,
                                          self.domains, self.suppressions, self.queue)

    @classmethod
    def open(cls, path: str, lifetimes: dict[MailType, float] | None = None,
             check: bool = True) -> Store:
        """Migrate, check integrity (refusing a corrupt file), and start the writer.

        A ``postgresql://`` URL opens the PostgreSQL store instead (several nodes, one queue).
        """
        if pg_schema.is_postgres_url(path):
            from helo_smtp.store.pg import PgDatabase

            migrate(path)
            return cls(PgDatabase(path), lifetimes)
        migrate(path)
        db = Database(path)
        if check:
            try:
                db.integrity_check()
            except CorruptDatabase:
                db.close()
                raise
        return cls(db, lifetimes)

    def ping(self) -> bool:
        """True when the database answers a read (for ``/healthz``)."""
        return self.db.read(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1

    def close(self) -> None:
        self.db.close()
