"""The PostgreSQL migrations produce the SQLite schema's logical twin, and run like it."""

from __future__ import annotations

import re
import sqlite3
import threading

import pytest

from helo_smtp.store import Store, migrate, pg_schema
from helo_smtp.store.pg import connect

#: SQLite declared type -> PostgreSQL type (an SQLite INTEGER PRIMARY KEY -> bigint identity).
TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision", "BLOB": "bytea"}
BOOKKEEPING = {"_sqlite_migrations", pg_schema.TABLE}


def _norm_default(d: str | None) -> str | None:
    return None if d is None else re.sub(r"::[a-z ]+$", "", d)


def _words(sql: str) -> set[str]:
    return set(re.findall(r"[a-z_]+", sql.lower()))


def sqlite_schema(path: str) -> dict[str, dict]:
    conn = sqlite3.connect(path)
    out: dict[str, dict] = {}
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for t in tables:
        if t in BOOKKEEPING:
            continue
        info = conn.execute(f"PRAGMA table_info({t})").fetchall()
        cols = [(r[1], TYPES[r[2]], not (r[3] or r[5]), _norm_default(r[4])) for r in info]
        pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        uniques, indexes = set(), {}
        for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({t})"):
            names = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
            if origin == "u":
                uniques.add(names)
            elif origin == "c":
                sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?",
                                   (name,)).fetchone()[0]
                where = sql.split(" WHERE ", 1)[1] if partial else ""
                indexes[name] = (names, bool(unique), _words(where) & {c[0] for c in cols})
        fks = {(r[3], r[2], r[4]) for r in conn.execute(f"PRAGMA foreign_key_list({t})")}
        out[t] = {"columns": cols, "pk": pk, "unique": uniques, "indexes": indexes, "fks": fks}
    conn.close()
    return out


def _pg_constraints(conn, table: str, kind: str) -> list:
    return conn.execute(
        "SELECT (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.conkey)"
        "  WITH ORDINALITY k(n, ord) JOIN pg_attribute a ON a.attrelid = c.conrelid"
        "  AND a.attnum = k.n), c.confrelid::regclass::text,"
        " (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.confkey)"
        "  WITH ORDINALITY k(n, ord) JOIN pg_attribute a ON a.attrelid = c.confrelid"
        "  AND a.attnum = k.n)"
        " FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype = %s",
        (table, kind)).fetchall()


def _pg_indexes(conn, table: str, columns: set[str]) -> dict:
    rows = conn.execute(
        "SELECT i.relname, (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(x.indkey)"
        "  WITH ORDINALITY k(n, ord) JOIN pg_attribute a ON a.attrelid = x.indrelid"
        "  AND a.attnum = k.n), x.indisunique, pg_get_expr(x.indpred, x.indrelid)"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        (table,)).fetchall()
    return {r[0]: (tuple(r[1]), r[2], _words(r[3] or "") & columns) for r in rows}


def pg_schema_of(url: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE'")]
        for t in tables:
            if t in BOOKKEEPING:
                continue
            cols = [(r[0], r[1], r[2] == "YES", _norm_default(r[3])) for r in conn.execute(
                "SELECT column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = %s ORDER BY ordinal_position", (t,))]
            [pk] = [r[0] for r in _pg_constraints(conn, t, "p")]
            uniques = {tuple(r[0]) for r in _pg_constraints(conn, t, "u")}
            fks = {(r[0][0], r[1], r[2][0]) for r in _pg_constraints(conn, t, "f")}
            out[t] = {"columns": cols, "pk": list(pk), "unique": uniques,
                      "indexes": _pg_indexes(conn, t, {c[0] for c in cols}), "fks": fks}
    return out


@pytest.fixture
def empty_pg(pg_server):
    """A PostgreSQL database with nothing in it (not even the migrations)."""
    name = pg_server.create_database(template="template0")
    yield pg_server.url(name)
    pg_server.drop_database(name)


def test_same_logical_schema_as_sqlite(tmp_path, empty_pg):
    sqlite_path = str(tmp_path / "s.db")
    assert migrate(empty_pg) == migrate(sqlite_path)  # the same steps, by name, in order
    lite, pg = sqlite_schema(sqlite_path), pg_schema_of(empty_pg)
    assert sorted(pg) == sorted(lite)
    for table in lite:
        assert pg[table] == lite[table], table
    # the comparison really looks at something
    assert lite["recipients"]["indexes"]["recipients_due"] == (
        ("mail_type", "next_attempt_at"), False, {"state", "held"})
    assert ("message_id", "messages", "id") in pg["recipients"]["fks"]


def test_migrate_is_idempotent_and_recorded(empty_pg):
    first = migrate(empty_pg)
    assert first == [name for name, _ in pg_schema.MIGRATIONS]
    assert migrate(empty_pg) == []
    with connect(empty_pg) as conn:
        assert pg_schema.applied(conn) == first


def test_nodes_starting_together_migrate_once(empty_pg):
    """Every node runs the migrations at start; the advisory lock makes them take turns."""
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def node():
        barrier.wait()
        results.append(migrate(empty_pg))

    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results, key=len) == [[], [], [], [n for n, _ in pg_schema.MIGRATIONS]]


def test_pg_schema_enforces_the_same_checks(pg_url):
    s = Store.open(pg_url)
    try:
        with pytest.raises(Exception, match="check constraint"):
            s.db.write(lambda c: c.execute(
                "INSERT INTO accounts (id, name, status, created_at) VALUES ('x', 'n', 'gone', 0)"))
        assert s.accounts.list() == []
    finally:
        s.close()


def test_postgres_url_is_recognised():
    assert pg_schema.is_postgres_url("postgresql://u@h/db")
    assert pg_schema.is_postgres_url("postgres://u@h/db")
    assert not pg_schema.is_postgres_url("var/helo-smtp.db")
    assert not pg_schema.is_postgres_url("/srv/postgresql/helo.db")


def test_redact_hides_passwords_only():
    assert pg_schema.redact("postgresql://helo:s3cret@db:5432/helo") == \
        "postgresql://helo:***@db:5432/helo"
    assert pg_schema.redact("postgresql://db/helo?user=helo&password=s3cret&sslmode=require") \
        == "postgresql://db/helo?user=helo&password=***&sslmode=require"
    assert pg_schema.redact("postgresql://helo@db/helo") == "postgresql://helo@db/helo"
