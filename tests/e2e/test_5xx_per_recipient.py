"""A 5xx at RCPT bounces that recipient alone; the others are delivered in the same
transaction, and the unknown user lands on the channel's suppression list."""

from __future__ import annotations

from helo_smtp.models import SuppressionReason


def test_5xx_bounces_one_recipient_others_delivered(scenario, sinks):
    sinks[0].h.rcpt_replies["ghost@example.test"] = (
        "550 5.1.1 The email account that you tried to reach does not exist")
    sc = scenario()
    mid = sc.submit(["hal@example.test", "ghost@example.test", "ida@example.test"])
    sc.wait(mid, delivered=2, bounced=1)

    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [
        ["hal@example.test", "ida@example.test"]]
    assert not sinks[1].h.commands  # a 5xx is final: the backup MX is never asked
    rows = {r["address"]: r for r in sc.store.admin.recipients(mid)}
    ghost = rows["ghost@example.test"]
    assert (ghost["state"], ghost["last_code"], ghost["last_status"], ghost["category"]) == (
        "bounced", 550, "5.1.1", "invalid_recipient")
    [sup] = sc.store.suppressions.list(sc.relay.tenant.channel.id)
    assert (sup.address, sup.reason, sup.source_message_id) == (
        "ghost@example.test", SuppressionReason.HARD_BOUNCE, mid)
    assert sc.store.admin.message(mid)["status"] == "accepted"
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 3, "delivery.delivered": 2,
                           "delivery.bounced": 1, "suppression.added": 1}
