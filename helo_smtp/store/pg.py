"""PostgreSQL behind the store, for several relay nodes on one database.

``PgDatabase`` has the interface of the SQLite ``Database`` (``read``, ``write``, ``awrite``,
``submit``, ``dialect``): the store modules hand it functions ``fn(conn)`` that run SQL with
``?`` placeholders and read rows as ``r["col"]`` or ``r[0]``. ``PgConn`` is the thin wrapper
that makes a psycopg connection look that way; the SQL itself is written to run on both engines
(``ON CONFLICT``, ``RETURNING``, ``CASE`` instead of scalar ``min``/``max``), with a
``dialect(c) == "postgresql"`` branch only where the engines truly differ (claims with
``FOR UPDATE SKIP LOCKED``, JSON counters, NOTIFY).

Write jobs are group-committed by a few writer threads (``pg_writer.py``: many jobs per READ
COMMITTED transaction, each in its own savepoint), so ``awrite`` never blocks the event loop
and rows every message touches (an account's counter) are not a bottleneck. A job that hits a
deadlock or a serialization failure, or a connection that turned out dead *before* COMMIT was
sent, is run again: nothing of it was committed. A failure at COMMIT is never retried (the
outcome is unknown); the caller gets ``StoreError`` and the client retries, with its
idempotency key.

Reads run in autocommit on a pooled connection: each statement sees the latest committed data.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.adapt import Loader
from psycopg_pool import ConnectionPool, PoolTimeout

from helo_smtp.errors import StorageFull, StoreError
from helo_smtp.store.pg_schema import apply as apply_schema
from helo_smtp.store.pg_schema import redact as _redact
from helo_smtp.store.pg_writer import GroupWriter, commit_sql

T = TypeVar("T")
log = logging.getLogger("helo_smtp.store.pg")

POOL_SIZE = 16  # connections per node at most (writers + readers)
POOL_TIMEOUT = 5.0  # seconds to wait for a connection: then StoreError (451, the client retries)
KEEPALIVE = 30.0  # seconds between liveness checks of the LISTEN connection

_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|::|:[A-Za-z_]\w*|[?%]""")


# ---- SQL and rows --------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def convert(sql: str, named: bool = False) -> str:
    """SQLite-style placeholders to psycopg's: ``?`` -> ``%s``, ``:name`` -> ``%(name)s`` (when
    ``named``), and ``%`` -> ``%%``. String literals, quoted names, comments and ``::`` casts are
    left alone (but ``%`` is doubled everywhere: psycopg scans literals too)."""
    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "?":
            return "%s"
        if tok.startswith(":") and tok != "::":
            return f"%({tok[1:]})s" if named else tok
        return tok.replace("%", "%%")
    return _TOKENS.sub(sub, sql)


class PgRow(tuple):  # type: ignore[type-arg]
    """A result row answering ``r["col"]`` and ``r[0]``, ``keys()`` and ``dict(r)``, like
    ``sqlite3.Row`` (the first column of a name wins, as there)."""

    _cols: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._cols[key])
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._cols)


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    cols: dict[str, int] = {}
    for i, d in enumerate(cursor.description or ()):
        cols.setdefault(d.name, i)

    def make(values: Sequence[Any]) -> PgRow:
        row = PgRow(values)
        row._cols = cols
        return row
    return make


class _NumericLoader(Loader):
    """``numeric`` (what PostgreSQL's ``sum`` of bigints returns) as int or float, as SQLite."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


def _clean(params: Any) -> Any:
    """PostgreSQL text cannot hold NUL; SQLite can. Such text (a decoded header, say) gets
    U+FFFD in its place rather than failing the whole write again on every client retry."""
    if isinstance(params, Mapping):
        return {k: _clean_one(v) for k, v in params.items()}
    return tuple(_clean_one(v) for v in params)


def _clean_one(v: Any) -> Any:
    return v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v


class PgConn:
    """A psycopg connection with the sqlite3 surface the store modules use."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.notices: set[tuple[str, str]] = set()

    def notify(self, channel: str, payload: str) -> None:
        """NOTIFY at COMMIT (sent with it, in one round trip; repeats within one transaction
        are folded, as PostgreSQL folds them anyway). Outside a write job: nothing is sent."""
        self.notices.add((channel, payload))

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
                ) -> psycopg.Cursor[Any]:
        named = isinstance(params, Mapping)
        return self.raw.execute(convert(sql, named), _clean(params))  # type: ignore[arg-type]

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]
                    ) -> psycopg.Cursor[Any]:
        rows = [_clean(p) for p in seq]
        cur = self.raw.cursor()
        if rows:
            cur.executemany(convert(sql, isinstance(rows[0], Mapping)), rows)
        return cur


# ---- errors --------------------------------------------------------------------------------

def translate(exc: BaseException) -> BaseException:
    """Disk full -> StorageFull; lost server or pool -> StoreError; SQL bugs and constraint
    violations unchanged (as the SQLite store does); anything else (HeloError...) unchanged."""
    if isinstance(exc, pg_errors.DiskFull | pg_errors.OutOfMemory):
        return StorageFull("database storage is full")
    if isinstance(exc, psycopg.IntegrityError | psycopg.ProgrammingError | psycopg.DataError):
        return exc
    if isinstance(exc, psycopg.Error | PoolTimeout):
        return StoreError("store write failed")
    return exc


def _translated(exc: BaseException) -> BaseException:
    new = translate(exc)
    if new is not exc:
        new.__cause__ = exc
    return new


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """One connection set up as every helo-smtp connection is (rows, numeric, autocommit);
    StoreError naming the server (not the password) when it cannot be reached."""
    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=row_factory, **kwargs)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}: {reason}") from None
    _configure(conn)
    return conn


def migrate(url: str) -> list[str]:
    """Create or upgrade the schema of the database at ``url``; safe to run on every start."""
    with connect(url) as conn:
        return apply_schema(conn)


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("numeric", _NumericLoader)


# ---- the database --------------------------------------------------------------------------
class PgDatabase:
    """The PostgreSQL database behind the store (one per process; nodes share the server)."""

    dialect = "postgresql"
    reads_on_loop = False  # every read is a round trip to the server: off the loop
    shared = True  # several nodes: pacing and connection caps live in the store

    def __init__(self, url: str, pool_size: int = POOL_SIZE, open_timeout: float = 10.0) -> None:
        self.path = self.url = url
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=2, max_size=pool_size, open=False, timeout=POOL_TIMEOUT,
            kwargs={"autocommit": True, "row_factory": row_factory,
                    "application_name": "helo-smtp"},
            configure=_configure, name="helo-smtp")
        try:
            self.pool.open(wait=True, timeout=open_timeout)
        except PoolTimeout:
            self.pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}") from None
        self._writer = GroupWriter(self.pool, PgConn, translate,
                                   lambda c: commit_sql(c.notices))
        self._closed = False
        self._lock = threading.Lock()

    # ---- reads ---------------------------------------------------------------------------
    def read(self, fn: Callable[[PgConn], T]) -> T:
        """Run ``fn`` on a pooled connection in autocommit (latest committed data)."""
        for attempt in range(2):
            try:
                with self.pool.connection() as conn:
                    try:
                        return fn(PgConn(conn))
                    except psycopg.OperationalError as exc:
                        # a pooled connection the server dropped while idle: once more
                        if attempt or not conn.broken:
                            raise _translated(exc) from None
            except PoolTimeout as exc:
                raise _translated(exc) from None
        raise AssertionError("unreachable")

    # ---- writes --------------------------------------------------------------------------
    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing to do: a PostgreSQL write is a round trip, so it stays on the writer."""

    def unbind_loop(self) -> None:
        """Nothing to do (see ``bind_loop``)."""

    def submit(self, fn: Callable[[PgConn], T]) -> Future[T]:
        if self._closed:
            raise StoreError("store is closed")
        fut: Future[T] = Future()
        self._writer.put(fn, fut)
        return fut

    def write(self, fn: Callable[[PgConn], T]) -> T:
        """Run ``fn`` in a write transaction and wait for its COMMIT (sync callers)."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[PgConn], T]) -> T:
        """Run ``fn`` in a write transaction off the loop; resolves after its COMMIT."""
        return await asyncio.wrap_future(self.submit(fn))

    # ---- notifications -------------------------------------------------------------------
    async def listen(self, channel: str, callback: Callable[[str], None],
                     on_connect: Callable[[], None] | None = None) -> None:
        """Call ``callback(payload)`` for each NOTIFY on ``channel``, until cancelled.

        Runs on its own connection (LISTEN needs one that stays open). If it is lost, it
        reconnects with backoff and calls ``on_connect`` again, since notifications sent in the
        gap are gone: the caller should then look at the queue once.
        """
        backoff = 0.2
        while True:
            try:
                aconn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with aconn:
                    await aconn.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(channel)))
                    backoff = 0.2
                    if on_connect is not None:
                        on_connect()
                    await self._pump(aconn, callback)
            except (psycopg.Error, OSError) as exc:
                log.warning("event=listen_lost channel=%s error=%s", channel, type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    @staticmethod
    async def _pump(aconn: psycopg.AsyncConnection[Any], callback: Callable[[str], None]
                    ) -> None:
        while True:
            async for note in aconn.notifies(timeout=KEEPALIVE):
                try:
                    callback(note.payload)
                except Exception:  # one bad callback must not stop the listening
                    log.exception("event=notify_callback_failed")
            await aconn.execute("SELECT 1")  # a silent dead peer shows up here

    # ---- lifecycle -----------------------------------------------------------------------
    def integrity_check(self) -> None:
        """Nothing to do: the server checks its own pages (``data_checksums``)."""

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._writer.close()
        self.pool.close()

