"""``helo-smtp purge [--dry-run] [--vacuum]``: retention now, with a report of what it freed."""

from __future__ import annotations

import time

from tests.cli.conftest import enqueue
from tests.support.relay import make_tenant

DAY = 86400.0


def _age(store, mid: str, days: float) -> None:
    """Make a delivered message look ``days`` old (accepted and finished then)."""
    at = time.time() - days * DAY
    store.db.write(lambda c: (
        c.execute("UPDATE messages SET created_at = ? WHERE id = ?", (at, mid)),
        c.execute("UPDATE recipients SET state = 'delivered', updated_at = ? WHERE"
                  " message_id = ?", (at, mid))))


def test_purge_dry_run_then_for_real(cli, db_store):
    t = make_tenant(db_store)
    body_only = enqueue(db_store, t.account.id, t.channel.id, t.sender, ["a@example.test"])
    everything = enqueue(db_store, t.account.id, t.channel.id, t.sender, ["b@example.test"])
    queued = enqueue(db_store, t.account.id, t.channel.id, t.sender, ["c@example.test"])
    _age(db_store, body_only, 40)
    _age(db_store, everything, 100)
    db_store.db.write(lambda c: c.execute("UPDATE messages SET created_at = created_at - ?"
                                          " WHERE id = ?", (200 * DAY, queued)))

    dry = cli.json("purge", "--dry-run")
    assert (dry["dry_run"], dry["bodies"], dry["messages"]) == (True, 2, 1)
    assert dry["rows"]["recipients"] == 1 and dry["rows"]["events"] == 2
    assert "would drop 2 message bodies" in cli.ok("purge", "--dry-run").stdout
    assert db_store.admin.message(everything) is not None

    out = cli.json("purge")
    assert (out["dry_run"], out["bodies"], out["messages"]) == (False, 2, 1)
    assert out["body_bytes"] == dry["body_bytes"] > 0
    assert db_store.admin.message(everything) is None
    assert db_store.queue.message_raw(body_only) == b""
    assert db_store.queue.message_raw(queued) != b""  # still queued: never touched
    assert cli.json("purge")["bodies"] == 0


def test_purge_vacuum_reports_the_file_sizes(cli, db_store, backend):
    out = cli.json("purge", "--vacuum")
    if backend == "postgresql":
        assert out["vacuum"]["vacuumed"] is False
    else:
        assert out["vacuum"]["vacuumed"] is True and out["vacuum"]["bytes_after"] > 0
