"""The operator's commands against a PostgreSQL ``server.database``: ``helo-smtp migrate``
creates and then reports the schema, and the queue commands read and steer the shared queue
(the SQL of store/admin.py runs on PostgreSQL too)."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from helo_smtp.cli.main import cli
from helo_smtp.models import MailType
from helo_smtp.store import Store, pg_schema
from tests.pg import nodeproc
from tests.support.configfile import dumps
from tests.support.relay import make_tenant


def _config(tmp_path, url: str):
    path = tmp_path / "helo.toml"
    path.write_text(dumps({
        "server": {"hostname": "relay.test", "database": url},
        "listeners": [{"name": "submission", "address": "127.0.0.1", "port": 0}],
        "http": {"listen": ""}}))
    return path


def _run(path, *args: str) -> dict:
    res = CliRunner().invoke(cli, ["--config", str(path), *args, "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_migrate_creates_then_reports_the_schema(tmp_path, pg_server):
    name = pg_server.create_database(template="template0")
    try:
        path = _config(tmp_path, pg_server.url(name))
        first = _run(path, "migrate")
        assert first["applied"] == [n for n, _ in pg_schema.MIGRATIONS]
        again = _run(path, "migrate")
        assert again["applied"] == [] and [s["status"] for s in again["steps"]] == \
            ["already applied"] * len(pg_schema.MIGRATIONS)
    finally:
        pg_server.drop_database(name)


def test_queue_commands_on_the_shared_queue(tmp_path, pg_url):
    store = Store.open(pg_url)
    try:
        t = make_tenant(store)
        msg = nodeproc.new_message(t.account.id, t.channel.id,
                                   ["a@example.test", "b@other.test"])
        asyncio.run(store.queue.enqueue(msg))
        path = _config(tmp_path, pg_url)
        stats = _run(path, "queue", "stats")
        assert stats["by_state"] == [{"mail_type": "transactional", "state": "queued",
                                      "count": 2}]
        # sum() over comparisons, as SQLite allows: the shim in pg_schema answers it
        [pending] = stats["pending"]
        assert (pending["pending"], pending["held"], pending["due"]) == (2, 0, 2)
        assert sorted(d["domain"] for d in stats["domains"]) == ["example.test", "other.test"]
        listed = _run(path, "queue", "list")
        assert sorted(r["address"] for r in listed) == ["a@example.test", "b@other.test"]
        assert store.queue.pending_count(MailType.TRANSACTIONAL) == 2
    finally:
        store.close()

