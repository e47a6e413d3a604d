"""A 421 in the middle of a session closes it: every recipient still in the transaction
(accepted ones included: DATA never happened) goes to the next MX."""

from __future__ import annotations


def test_421_at_rcpt_moves_the_whole_transaction_to_the_next_mx(scenario, sinks):
    sinks[0].h.rcpt_replies["jon@example.test"] = "421 4.3.2 Service shutting down"
    sc = scenario()
    mid = sc.submit(["ivy@example.test", "jon@example.test", "kim@example.test"])
    sc.wait(mid, delivered=3)

    mx1 = [c for c in sinks[0].h.commands if c[1] == "RCPT"]
    assert [c[2] for c in mx1] == ["ivy@example.test", "jon@example.test"]  # then closed
    assert not sinks[0].h.messages
    assert [m["rcpt_tos"] for m in sinks[1].h.messages] == [
        ["ivy@example.test", "jon@example.test", "kim@example.test"]]
    assert {a["remote_host"] for a in sc.attempts(mid)} == {"mx2.example.test"}
    assert sc.counts() == {"message.received": 1, "recipient.accepted": 3, "delivery.delivered": 3}

