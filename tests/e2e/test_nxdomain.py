"""A domain that does not exist bounces at once with 5.1.2 (domain_not_found), suppressed;
the other recipient of the same message is delivered."""

from __future__ import annotations


def test_nxdomain_bounces_at_once(scenario, sinks):
    sc = scenario()
    mid = sc.submit(["who@nowhere-at-all.test", "pam@example.test"])
    sc.wait(mid, bounced=1, delivered=1)

    rows = {r["address"]: r for r in sc.store.admin.recipients(mid)}
    gone = rows["who@nowhere-at-all.test"]
    assert (gone["state"], gone["last_status"], gone["category"]) == (
        "bounced", "5.1.2", "domain_not_found")
    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [["pam@example.test"]]
    assert [s.address for s in sc.store.suppressions.list(sc.relay.tenant.channel.id)] == [
        "who@nowhere-at-all.test"]
    assert sc.store.admin.message(mid)["status"] == "accepted"
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 2, "delivery.bounced": 1,
                           "delivery.delivered": 1, "suppression.added": 1}
