"""Plain delivery: one message, two domains; one transaction per domain, every attempt
recorded, one log line per recipient attempt, metrics counted."""

from __future__ import annotations

import logging

from helo_smtp.runtime import metrics
from tests.support.metricvalue import sample
from tests.support.net import MX_IPS, POOLS
from tests.support.outbound import capture_log
from tests.support.waiting import wait_for


def _attempts_metric(outcome: str) -> float:
    return sample(metrics.DELIVERY_ATTEMPTS, "_total", mail_type="transactional",
                  outcome=outcome)


def test_plain_delivery(scenario, sinks):
    before = _attempts_metric("delivered")
    sc = scenario()
    with capture_log("helo_smtp.delivery", logging.INFO) as log:
        mid = sc.submit(["ann@example.test", "bob@example.test", "cy@other.test"])
        sc.wait(mid, delivered=3)
        # metrics and the log line follow the commit of each record
        wait_for(lambda: len(log.kv("delivery")) == 3, what="three delivery log lines")

    mx1, mx3 = sinks[0].h.messages, sinks[2].h.messages
    assert [m["rcpt_tos"] for m in mx1] == [["ann@example.test", "bob@example.test"]]
    assert [m["rcpt_tos"] for m in mx3] == [["cy@other.test"]]
    assert mx1[0]["mail_from"] == sc.relay.tenant.sender
    assert f"<{mid}@relay.test>".encode() in mx1[0]["data"]
    assert sc.store.admin.message(mid)["status"] == "accepted"

    rows = {a["address"]: a for a in sc.attempts(mid)}
    assert rows["ann@example.test"]["remote_host"] == "mx1.example.test"
    assert rows["ann@example.test"]["remote_ip"] == MX_IPS[0]
    assert rows["cy@other.test"]["remote_ip"] == MX_IPS[2]
    assert rows["cy@other.test"]["tls"] == 1  # mx3 offers STARTTLS, mx1 does not
    assert rows["ann@example.test"]["tls"] == 0
    assert all(a["source_ip"] == POOLS["transactional"][0] for a in rows.values())
    assert all((a["stage"], a["code"], a["outcome"]) == ("data", 250, "delivered")
               for a in rows.values())

    lines = log.kv("delivery")
    assert sorted(f["domain"] for f in lines) == ["example.test", "example.test", "other.test"]
    assert {(f["message_id"], f["mail_type"], f["state"]) for f in lines} == {
        (mid, "transactional", "delivered")}
    assert {f["host"] for f in lines} == {"mx1.example.test", "mx3.example.test"}
    assert all(f["reply"].startswith("250 2.0.0") for f in lines)
    assert _attempts_metric("delivered") == before + 3

    assert sc.counts() == {"message.received": 1, "recipient.accepted": 3, "delivery.delivered": 3}
