"""A quoted local part (RFC 5321 §4.1.2) and an SMTPUTF8 local part are accepted and delivered
with the recipient exactly as the client wrote it (issue #15 item 7)."""

from __future__ import annotations

from tests.support.submit import build

QUOTED = '"john doe"@example.test'
UTF8 = "jörg@example.test"


def test_quoted_and_utf8_local_parts_reach_the_mx_as_written(scenario, sinks):
    sc = scenario()
    sender = sc.relay.tenant.sender
    with sc.session() as s:
        mid = s.send([QUOTED], raw=build(sender, ["john@example.test"]))
        s.s.mail(sender, ["SMTPUTF8"])
        assert s.s.rcpt(UTF8)[0] == 250
        code, text = s.s.data(build(sender, ["jorg@example.test"]))
        assert code == 250, text
        mid_utf8 = text.decode().split("queued as ")[1]
    sc.wait(mid, delivered=1)
    sc.wait(mid_utf8, delivered=1)
    got = sorted(r for m in sinks[0].h.messages for r in m["rcpt_tos"])
    assert got == sorted([QUOTED, UTF8])
    assert sc.counts() == {"message.received": 2, "recipient.accepted": 2,
                           "delivery.delivered": 2}
