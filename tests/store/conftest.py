"""Every store test runs on both backends (SQLite and PostgreSQL), except those marked
``sqlite_only`` (pragmas, files): the store is one interface and both must keep it."""

from __future__ import annotations

from tests.support.pgserver import BACKENDS


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    if any(m.args and m.args[0] == "backend" for m in metafunc.definition.iter_markers(
            "parametrize")):
        return  # the test chose its backends itself
    only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
    metafunc.parametrize("backend", ["sqlite"] if only_sqlite else list(BACKENDS),
                         indirect=True, ids=str)
