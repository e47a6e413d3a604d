"""check-config on a file with a partial ``[pools.broadcast]`` table: the values are the
broadcast pool's own defaults and are labelled ``default``; the key set is labelled ``file``."""

from __future__ import annotations

from helo_smtp.config import Config
from tests.cli.conftest import CLI, config_data
from tests.support.configfile import dumps


def test_check_config_shows_broadcast_defaults_next_to_a_partial_pool_table(cli: CLI, tmp_path,
                                                                           dns_server):
    data = config_data(tmp_path, dns_server.port, server={"database": str(cli.db)},
                       pools={"broadcast": {"helo_name": "bulk.example.test"}})
    cli.config.write_text(dumps(data), encoding="utf-8")
    rows = {r["key"]: r for r in cli.json("check-config")["settings"]}
    assert rows["pools.broadcast.helo_name"] == {
        "key": "pools.broadcast.helo_name", "value": "bulk.example.test", "origin": "file"}
    want = Config().pools.broadcast
    for key in ("rate", "per_domain_rate", "max_connections", "per_domain_connections"):
        row = rows[f"pools.broadcast.{key}"]
        assert (row["value"], row["origin"]) == (getattr(want, key), "default"), key
    assert (rows["pools.broadcast.rate"]["value"], rows["pools.transactional.rate"]["value"]) \
        == (50.0, 0.0)
