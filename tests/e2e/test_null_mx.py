"""A domain with a null MX (RFC 7505) bounces at once with 5.1.10, without a connection, and
the address is suppressed (domain_not_found is a recipient-class hard bounce)."""

from __future__ import annotations


def test_null_mx_bounces_at_once(scenario, sinks):
    sc = scenario()
    mid = sc.submit(["nobody@nullmx.test"])
    sc.wait(mid, bounced=1)

    [row] = sc.store.admin.recipients(mid)
    assert (row["last_status"], row["category"], row["last_code"]) == (
        "5.1.10", "domain_not_found", None)
    [att] = sc.attempts(mid)
    assert (att["stage"], att["outcome"], att["remote_host"]) == ("dns", "bounced", None)
    assert not any(s.h.connections for s in sinks)
    assert [s.address for s in sc.store.suppressions.list(sc.relay.tenant.channel.id)] == [
        "nobody@nullmx.test"]
    assert sc.store.admin.message(mid)["status"] == "failed"
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 1, "delivery.bounced": 1,
                           "suppression.added": 1}
