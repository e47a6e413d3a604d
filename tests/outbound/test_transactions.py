"""What one transaction puts on the wire: recipient overflow (452 4.5.3), SMTPUTF8 and
8BITMIME/SIZE parameters, the 5.6.7 bounce for a non-ASCII address without SMTPUTF8, HELO
after an EHLO refused with 5xx."""

from __future__ import annotations

from helo_smtp.models import MailType
from tests.support.accounting import assert_accounting
from tests.support.outbound import enqueue, raw_message, wait_states


def test_452_4_5_3_sends_the_rest_in_a_new_transaction_at_once(rig_factory, sinks, dns,
                                                               extra_sinks):
    sink = extra_sinks(21, "mx.capped.test")
    dns.add("capped.test", "MX", "10 mx.capped.test.")
    dns.add("mx.capped.test", "A", sink.host)
    taken = {"n": 0}

    def two_per_transaction(address, session):
        if taken["n"] == 2:
            taken["n"] = 0
            return "452 4.5.3 Too many recipients"
        taken["n"] += 1
        return None

    for i in range(5):
        sink.h.rcpt_replies[f"p{i}@capped.test"] = two_per_transaction
    rig = rig_factory()
    mid = enqueue(rig.store, rig.tenant, [f"p{i}@capped.test" for i in range(5)])
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"delivered": 5})

    assert [m["rcpt_tos"] for m in sink.h.messages] == [
        ["p0@capped.test", "p1@capped.test"], ["p2@capped.test", "p3@capped.test"],
        ["p4@capped.test"]]
    assert len(sink.h.connections) == 1  # same connection, RSET between transactions
    assert {r["attempts"] for r in rig.store.admin.recipients(mid)} == {1}
    assert rig.store.events.counts() == {"message.received": 1,
                                         "recipient.accepted": 5, "delivery.delivered": 5}
    assert_accounting(rig.store)


def test_non_ascii_address_without_smtputf8_bounces_5_6_7(rig_factory, dns, extra_sinks):
    sink = extra_sinks(23, "mx.ascii.test")  # no SMTPUTF8 in its EHLO
    dns.add("ascii.test", "MX", "10 mx.ascii.test.")
    dns.add("mx.ascii.test", "A", sink.host)
    rig = rig_factory()
    mid = enqueue(rig.store, rig.tenant, ["plain@ascii.test", "jörg@ascii.test"])
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"delivered": 1, "bounced": 1})

    rows = {r["address"]: r for r in rig.store.admin.recipients(mid)}
    assert (rows["jörg@ascii.test"]["last_status"], rows["jörg@ascii.test"]["category"]) == (
        "5.6.7", "content")
    assert [m["rcpt_tos"] for m in sink.h.messages] == [["plain@ascii.test"]]
    assert [c[2] for c in sink.h.commands if c[1] == "RCPT"] == ["plain@ascii.test"]
    assert rig.store.suppressions.list(rig.tenant.channel.id) == []  # not the address's fault
    assert_accounting(rig.store)


def test_smtputf8_and_8bitmime_are_passed_when_needed(rig_factory, dns, extra_sinks):
    sink = extra_sinks(22, "mx.utf8.test", smtputf8=True)
    dns.add("utf8.test", "MX", "10 mx.utf8.test.")
    dns.add("mx.utf8.test", "A", sink.host)
    rig = rig_factory()
    body = "Grüße aus Köln.\r\n"
    ascii_mid = enqueue(rig.store, rig.tenant, ["plain@utf8.test"])
    utf8_mid = enqueue(rig.store, rig.tenant, ["jörg@utf8.test"],
                       raw=raw_message(rig.tenant.sender, ["jörg@utf8.test"], body=body))
    rig.workers.wake()
    wait_states(rig.store, ascii_mid, lambda c: c == {"delivered": 1})
    wait_states(rig.store, utf8_mid, lambda c: c == {"delivered": 1})

    by_rcpt = {m["rcpt_tos"][0]: m for m in sink.h.messages}
    assert body.encode() in by_rcpt["jörg@utf8.test"]["data"]
    options = sorted(sink.h.mail_options, key=len)
    plain, utf8 = options
    assert "SMTPUTF8" not in plain and "BODY=8BITMIME" not in plain
    assert "SMTPUTF8" in utf8 and "BODY=8BITMIME" in utf8
    assert all(any(o.startswith("SIZE=") for o in opts) for opts in options)
    assert_accounting(rig.store)


def test_broadcast_and_transactional_claims_are_separate(rig_factory, sinks):
    """Each worker takes only its own type: a broadcast row is never delivered from the
    transactional pool (its source address says which pool sent it)."""
    rig = rig_factory()
    tx = enqueue(rig.store, rig.tenant, ["t@other.test"])
    bc = enqueue(rig.store, rig.tenant, ["b@other.test"], MailType.BROADCAST)
    rig.workers.wake()
    wait_states(rig.store, tx, lambda c: c == {"delivered": 1})
    wait_states(rig.store, bc, lambda c: c == {"delivered": 1})
    src = {a["address"]: a["source_ip"] for mid in (tx, bc)
           for a in rig.store.admin.attempts(mid)}
    pools = rig.cfg.pools
    assert src == {"t@other.test": pools.transactional.source_addresses[0],
                   "b@other.test": pools.broadcast.source_addresses[0]}


def test_an_idn_domain_goes_as_an_a_label_without_smtputf8(rig_factory, dns, extra_sinks):
    sink = extra_sinks(24, "mx.idn.test")  # no SMTPUTF8
    dns.add("xn--bcher-kva.test", "MX", "10 mx.idn.test.")  # bücher.test
    dns.add("mx.idn.test", "A", sink.host)
    rig = rig_factory()
    mid = enqueue(rig.store, rig.tenant, ["kurt@bücher.test", "jörg@bücher.test"])
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"delivered": 1, "bounced": 1})
    assert [m["rcpt_tos"] for m in sink.h.messages] == [["kurt@xn--bcher-kva.test"]]
    assert "SMTPUTF8" not in sink.h.mail_options[0]
    assert_accounting(rig.store)


def test_a_5xx_to_ehlo_falls_back_to_helo(rig_factory, dns, extra_sinks):
    """RFC 5321 §3.2: a server that does not know EHLO answers 5xx; the client says HELO."""
    sink = extra_sinks(25, "mx.old.test")
    sink.h.ehlo_reply = "502 5.5.1 Command not implemented"
    dns.add("old.test", "MX", "10 mx.old.test.")
    dns.add("mx.old.test", "A", sink.host)
    rig = rig_factory()
    mid = enqueue(rig.store, rig.tenant, ["u@old.test"])
    rig.workers.wake()
    wait_states(rig.store, mid, lambda c: c == {"delivered": 1})

    verbs = [verb for _, verb, _ in sink.h.commands]
    assert verbs[:3] == ["EHLO", "HELO", "MAIL"]  # no STARTTLS: HELO offers no extensions
    assert sink.h.messages[0]["ehlo"] == rig.cfg.pool(MailType.TRANSACTIONAL).helo_name
    assert sink.h.messages[0]["tls"] is False
    assert_accounting(rig.store)
