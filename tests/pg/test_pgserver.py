"""The test PostgreSQL fixture itself: missing server binaries skip (which fails a CI run:
tests/support/noskip.py, tested in tests/qa/test_ci_rule.py)."""

from __future__ import annotations

import pytest

from tests.support import pgserver


def test_missing_binaries_skip(monkeypatch):
    monkeypatch.setattr(pgserver, "find_bindir", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="apt install postgresql"):
        pgserver.require_bindir()


def test_binaries_found_have_the_server_programs():
    bindir = pgserver.require_bindir()
    assert (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def test_each_test_gets_a_fresh_database(pg_server):
    a, b = pg_server.create_database(), pg_server.create_database()
    try:
        assert a != b
        with pg_server.admin() as conn:
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        assert {a, b} <= names
    finally:
        pg_server.drop_database(a)
        pg_server.drop_database(b)
    with pg_server.admin() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert not {a, b} & names
