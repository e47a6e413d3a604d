"""Mixed RCPT replies at a single MX: each recipient gets its own verdict and category; only
the unknown user is suppressed, never the policy, spam or mailbox-full bounces."""

from __future__ import annotations


def test_mixed_rcpt_results(scenario, sinks):
    h = sinks[2].h  # other.test -> mx3 only
    h.rcpt_replies.update({
        "gone@other.test": "550 5.1.1 <gone@other.test>: Recipient address rejected: "
                           "User unknown in virtual mailbox table",
        "full@other.test": "552 5.2.2 <full@other.test>: user is over quota",
        "spam@other.test": "550 5.7.1 Our system has detected that this message is likely "
                           "unsolicited mail",
        "grey@other.test": "451 4.7.1 Greylisted, please try again later",
        "rate@other.test": "452 4.2.1 The user you are trying to contact is receiving mail "
                           "at a rate that prevents additional messages from being delivered",
    })
    sc = scenario()
    rcpts = ["ok@other.test", "gone@other.test", "full@other.test", "spam@other.test",
             "grey@other.test", "rate@other.test"]
    mid = sc.submit(rcpts)
    sc.wait(mid, delivered=1, bounced=3, deferred=2)

    rows = {r["address"]: (r["state"], r["category"]) for r in sc.store.admin.recipients(mid)}
    assert rows == {
        "ok@other.test": ("delivered", None),
        "gone@other.test": ("bounced", "invalid_recipient"),
        "full@other.test": ("bounced", "mailbox_full"),
        "spam@other.test": ("bounced", "spam_block"),
        "grey@other.test": ("deferred", "policy"),
        "rate@other.test": ("deferred", "rate_limited"),
    }
    assert [m["rcpt_tos"] for m in h.messages] == [["ok@other.test"]]  # one transaction
    assert [s.address for s in sc.store.suppressions.list(sc.relay.tenant.channel.id)] == [
        "gone@other.test"]
    assert sc.store.admin.message(mid)["status"] == "delayed"
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 6, "delivery.delivered": 1,
                           "delivery.bounced": 3, "delivery.deferred": 2,
                           "suppression.added": 1}
