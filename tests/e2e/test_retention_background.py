"""The relay applies retention in the background: a delivered message loses its body once
``body_days`` have passed since its last recipient's final state; a deferred one keeps it."""

from __future__ import annotations

import time

# 0.00002 days is 1.7 s: long enough to see the body before, short enough to wait for.
RETENTION = {"body_days": 0.00002, "metadata_days": 0.0, "interval": 0.2, "pause": 0.0}


def _raw(store, mid: str) -> bytes:
    return bytes(store.db.read(lambda c: c.execute(
        "SELECT raw FROM messages WHERE id = ?", (mid,)).fetchone()[0]))


def test_background_pass_drops_delivered_bodies_only(scenario, sinks):
    for s in sinks[:2]:
        s.h.rcpt_replies["slow@example.test"] = "451 4.3.0 Try later"
    sc = scenario(retention=RETENTION)
    done = sc.submit(["fast@example.test"])
    live = sc.submit(["slow@example.test"])
    sc.wait(done, delivered=1)
    sc.wait(live, deferred=1)
    deadline = time.monotonic() + 20
    while _raw(sc.store, done) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _raw(sc.store, done) == b""
    assert _raw(sc.store, live) != b""  # a deferred recipient: the body is still needed
    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [["fast@example.test"]]
