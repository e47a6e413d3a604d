"""The list of other suites' tests that run on both backends names tests that exist (a renamed
test would otherwise silently drop back to SQLite only)."""

from __future__ import annotations

import importlib

from tests.pg.both_backends import ON_BOTH_BACKENDS


def test_every_listed_test_exists():
    assert ON_BOTH_BACKENDS
    for nodeid in ON_BOTH_BACKENDS:
        path, name = nodeid.split("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert callable(getattr(module, name, None)), nodeid
