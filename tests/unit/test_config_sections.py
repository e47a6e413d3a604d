"""A table in the config file is merged over that section's own defaults (issue #23 item 3).

``[pools.broadcast]`` defaults differ from ``PoolConfig``'s class defaults (rate 50, per-domain
rate 5, 50 connections, 5 per domain: docs/settings.md). A file that sets one key of the table
keeps every other key at the broadcast defaults, for each pool key in turn.
"""

from __future__ import annotations

import dataclasses

import pytest

from helo_smtp import config
from helo_smtp.config import Config, PoolConfig

BROADCAST = Config().pools.broadcast
TRANSACTIONAL = Config().pools.transactional
# a value for each pool key that differs from both pools' defaults
NEW = {"source_addresses": ["192.0.2.7"], "helo_name": "bulk.example.test",
       "max_connections": 7, "per_domain_connections": 3, "rate": 9.0, "per_domain_rate": 2.0}


def test_every_pool_key_has_a_new_value_here():
    assert set(NEW) == {f.name for f in dataclasses.fields(PoolConfig)}
    assert BROADCAST != TRANSACTIONAL  # the broadcast pool's own defaults exist


@pytest.mark.parametrize("key", sorted(NEW))
def test_one_broadcast_key_keeps_the_other_broadcast_defaults(key):
    cfg = config.from_dict({"pools": {"broadcast": {key: NEW[key]}}})
    assert cfg.pools.broadcast == dataclasses.replace(BROADCAST, **{key: NEW[key]})
    assert cfg.pools.transactional == TRANSACTIONAL


@pytest.mark.parametrize("key", sorted(NEW))
def test_one_transactional_key_keeps_the_other_transactional_defaults(key):
    cfg = config.from_dict({"pools": {"transactional": {key: NEW[key]}}})
    assert cfg.pools.transactional == dataclasses.replace(TRANSACTIONAL, **{key: NEW[key]})
    assert cfg.pools.broadcast == BROADCAST


def test_helo_name_alone_keeps_the_documented_broadcast_pacing():
    pool = config.from_dict({"pools": {"broadcast": {"helo_name": "x"}}}).pools.broadcast
    assert (pool.rate, pool.per_domain_rate, pool.max_connections,
            pool.per_domain_connections) == (50.0, 5.0, 50, 5)


def test_every_section_merges_over_its_own_defaults():
    """Each table of the file, given one key, leaves the section's other keys at the values
    ``Config()`` has for them (no section falls back to another's defaults)."""
    base = config.to_dict(Config())
    for section, values in base.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, dict):  # [pools.<name>]: covered above
                continue
            cfg = config.to_dict(config.from_dict({section: {key: value}}))
            assert cfg[section] == values, (section, key)
