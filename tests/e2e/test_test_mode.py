"""Test mode (SPEC §15): a ``--test`` credential passes every rule and gets real replies; the
message and its events are recorded; nothing reaches any MTA; the simulator addresses produce
bounce, complaint and deferral events, and suppress nothing."""

from __future__ import annotations

import dataclasses
import smtplib

from tests.support.submit import Submitter, build

BOUNCE, COMPLAINT, DEFERRED = ("bounce@simulator.invalid", "complaint@simulator.invalid",
                               "deferred@simulator.invalid")


def _test_credential(sc):
    t = sc.relay.tenant
    cred, secret = sc.store.credentials.create(t.account.id, t.channel.id, "ci", test=True)
    assert cred.test and sc.store.credentials.get(cred.id).test
    sc.relay.tenant = dataclasses.replace(t, username=cred.username, secret=secret)


def test_test_credential_delivers_nothing_and_simulates(scenario, sinks):
    sc = scenario()
    _test_credential(sc)
    mid = sc.submit(["a@example.test", BOUNCE, COMPLAINT, DEFERRED])
    # decided at commit: nothing waits for a worker
    assert sc.store.queue.accounting() == {"delivered": 3, "bounced": 1}
    assert all(s.h.messages == [] for s in sinks)  # nothing reached any MTA
    assert sc.store.events.counts(mid) == {
        "message.received": 1, "recipient.accepted": 4, "delivery.delivered": 3,
        "delivery.bounced": 1,
        "delivery.deferred": 1, "recipient.complained": 1}
    bounced = [e for e in sc.store.events.list(message_id=mid, type_="delivery.bounced")]
    assert [(e["recipient"], e["data"]["status"], e["data"]["category"]) for e in bounced] == [
        (BOUNCE, "5.1.1", "invalid_recipient")]
    rows = {a["address"]: a for a in sc.attempts(mid)}
    assert rows["a@example.test"]["stage"] == "simulator"
    assert rows["a@example.test"]["remote_host"] == "simulator.invalid"
    assert sc.store.suppressions.list(sc.relay.tenant.channel.id) == []
    # the same simulator address again: accepted again, since test bounces suppress nothing
    again = sc.submit([BOUNCE])
    assert sc.store.events.counts(again)["delivery.bounced"] == 1
    assert sc.store.db.read(lambda c: c.execute(
        "SELECT test FROM messages WHERE id = ?", (mid,)).fetchone()[0]) == 1


def test_every_rule_still_applies_in_test_mode(scenario, sinks, client_ctx):
    """A test credential is refused exactly where a live one would be."""
    sc = scenario()
    _test_credential(sc)
    sc.store.suppressions.add(sc.relay.tenant.channel.id, ["gone@example.test"])
    with Submitter(sc.relay, client_ctx) as s:
        assert s.s.mail("app@unverified.test")[0] == 550  # domain_unverified
        s.s.rset()
        s.s.mail(sc.relay.tenant.sender)
        s.s.rcpt("gone@example.test")
        code, text = s.s.data(build(sc.relay.tenant.sender, ["gone@example.test"]))
        assert (code, text.decode()) == (
            550, "5.7.1 recipients_suppressed: all recipients are suppressed")
    assert sc.store.queue.accounting() == {}


def test_test_mail_is_not_charged_to_send_limits(scenario, client_ctx):
    sc = scenario()
    sc.store.limits.set(sc.relay.tenant.channel.id, hourly=1)
    _test_credential(sc)
    for _ in range(3):
        sc.submit(["a@example.test"])
    [hour, _] = sc.store.limits.usage(sc.relay.tenant.channel.id)
    assert hour.used == 0


def test_a_live_credential_is_not_simulated(scenario, sinks):
    """The simulator domain is only special in test mode: live mail to it is a real
    delivery attempt, which fails at DNS (the local resolver refuses ``.invalid``)."""
    sc = scenario()
    mid = sc.submit([BOUNCE])
    sc.wait(mid, deferred=1)
    [a] = sc.attempts(mid)
    assert (a["stage"], a["category"]) == ("dns", "dns")


def test_smtp_session_sees_the_real_reply(scenario, client_ctx):
    """smtplib's sendmail, as an app would call it: the real 250 with a real message id."""
    sc = scenario()
    _test_credential(sc)
    t = sc.relay.tenant
    with smtplib.SMTP("127.0.0.1", sc.relay.ports["submission"], timeout=30) as s:
        s.starttls(context=client_ctx)
        s.login(t.username, t.secret)
        assert s.sendmail(t.sender, [DEFERRED], build(t.sender, [DEFERRED])) == {}
    [msg] = sc.store.admin.messages()
    assert sc.store.queue.accounting() == {"delivered": 1}
    assert sc.store.events.counts(msg["id"]) == {
        "message.received": 1, "recipient.accepted": 1, "delivery.deferred": 1,
        "delivery.delivered": 1}
