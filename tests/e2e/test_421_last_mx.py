"""A 421 from the only MX host defers every recipient of the transaction (transient, the
connection is gone); nothing is bounced or suppressed."""

from __future__ import annotations


def test_421_at_mail_on_the_only_mx_defers(scenario, sinks):
    sinks[2].h.mail_reply = "421 4.7.0 Too many connections from your host"
    sc = scenario()
    mid = sc.submit(["lee@other.test", "max@other.test"])
    sc.wait(mid, deferred=2)
    rows = sc.store.admin.recipients(mid)
    assert {(r["last_code"], r["last_status"], r["category"]) for r in rows} == {
        (421, "4.7.0", "rate_limited")}
    assert not sinks[2].h.messages
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 2, "delivery.deferred": 2}
