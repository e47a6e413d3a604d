"""The bounces listener beyond plain DSNs: delays, auto-replies, complaints (ARF, to the VERP
address and to fbl@), broadcast counters, and that it is never an open relay."""

from __future__ import annotations

import smtplib

from helo_smtp.errors import CATALOG
from tests.events.conftest import BOUNCE_DOMAIN
from tests.events.test_bounces import _delivered
from tests.support.reports import fixture, rcpt_reply, send_report


def _reply(reply) -> tuple[int, str]:
    return reply.code, f"{reply.status} {reply.text}"


def test_delayed_dsn_is_a_deferred_event_and_keeps_the_state(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    rcpt = "ann@example.test"
    mid, paths = _delivered(relay, sinks, client_ctx, [rcpt])
    code, _ = send_report(relay.ports["bounces"], paths[rcpt],
                          fixture("postfix_delayed.eml", return_path=paths[rcpt],
                                  recipient=rcpt))
    assert code == 250
    [row] = relay.store.admin.recipients(mid)
    assert row["state"] == "delivered"
    [ev] = relay.store.events.list(message_id=mid, type_="delivery.deferred")
    assert (ev["data"]["status"], ev["data"]["source"]) == ("4.4.1", "dsn")
    assert [e["type"] for e in relay.store.events.feed(message_id=mid)] == [
        "recipient.accepted", "delivery.delivered", "delivery.deferred"]


def test_auto_reply_is_kept_but_changes_nothing(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    rcpt = "ann@example.test"
    mid, paths = _delivered(relay, sinks, client_ctx, [rcpt])
    code, _ = send_report(relay.ports["bounces"], paths[rcpt],
                          fixture("autoreply_unparseable.eml", return_path=paths[rcpt],
                                  recipient=rcpt), sender="someone@example.test")
    assert code == 250
    assert relay.store.admin.recipients(mid)[0]["state"] == "delivered"
    [kept] = relay.store.events.list(type_="bounce.unmatched")
    assert kept["data"]["kind"] == "other"
    assert "get back to you" in kept["data"]["text"]


def test_arf_complaint_to_fbl_address(bounce_relay, sinks, client_ctx, receiver):
    relay = bounce_relay()
    rx = receiver()
    _, rx.secret = relay.store.webhooks.create(relay.tenant.channel.id, rx.url, ["complained"])
    rcpt = "ann@example.test"
    mid, paths = _delivered(relay, sinks, client_ctx, [rcpt], listener="broadcast")
    fbl = f"fbl@{BOUNCE_DOMAIN}"
    code, _ = send_report(relay.ports["bounces"], fbl, fixture(
        "arf_abuse.eml", return_path=paths[rcpt], recipient=rcpt, fbl=fbl),
        sender="abusedesk@isp.example.test")
    assert code == 250
    [ev] = relay.store.events.list(message_id=mid, type_="recipient.complained")
    assert ev["data"]["feedback_type"] == "abuse"
    [sup] = relay.store.suppressions.list(relay.tenant.channel.id)
    assert (sup.address, sup.reason) == (rcpt, "complaint")
    bid = relay.store.admin.message(mid)["broadcast_id"]
    assert relay.store.broadcasts.get(bid)["complaints"] == 1
    from tests.support.waiting import wait_for
    wait_for(lambda: rx.types() == ["complained"], what="complained webhook")
    # the same report again (to the VERP address this time) is not counted twice
    send_report(relay.ports["bounces"], paths[rcpt], fixture(
        "arf_abuse.eml", return_path=paths[rcpt], recipient=rcpt))
    assert relay.store.broadcasts.get(bid)["complaints"] == 1


def test_broadcast_counters_follow_a_late_bounce(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    rcpt = "ann@example.test"
    mid, paths = _delivered(relay, sinks, client_ctx, [rcpt], listener="broadcast")
    bid = relay.store.admin.message(mid)["broadcast_id"]
    assert relay.store.broadcasts.get(bid)["delivered"] == 1
    send_report(relay.ports["bounces"], paths[rcpt], fixture(
        "gmail_dsn.eml", return_path=paths[rcpt], recipient=rcpt))
    b = relay.store.broadcasts.get(bid)
    assert (b["delivered"], b["bounced"], b["bounced_by_category"]) == (
        0, 1, {"invalid_recipient": 1})


def test_never_an_open_relay(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    port = relay.ports["bounces"]
    denied = _reply(CATALOG["relay_denied"])
    for rcpt in ("victim@example.test", f"b+1-aaaaaaaaaaaa@{BOUNCE_DOMAIN}.evil.test",
                 "b+1-aaaaaaaaaaaa@example.test"):
        code, text = rcpt_reply(port, rcpt)
        assert (code, text.decode()) == denied, rcpt
    bad = _reply(CATALOG["bad_return_path"])
    for rcpt in (f"b+1-aaaaaaaaaaaa@{BOUNCE_DOMAIN}", f"postmaster@{BOUNCE_DOMAIN}",
                 f"b+zz@{BOUNCE_DOMAIN}"):
        code, text = rcpt_reply(port, rcpt)
        assert (code, text.decode()) == bad, rcpt
    # a whole transaction with only a foreign recipient queues nothing and sends nothing
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.remote.test")
        try:
            s.sendmail("spammer@evil.test", ["victim@example.test"], b"Subject: x\r\n\r\nx\r\n")
            raise AssertionError("relayed")
        except smtplib.SMTPRecipientsRefused:
            pass
    assert relay.store.queue.pending_count() == 0
    assert relay.store.queue.accounting() == {}
    assert sinks[0].h.messages == []


def test_a_forged_token_for_a_real_row_is_refused(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    _mid, paths = _delivered(relay, sinks, client_ctx, ["ann@example.test"])
    good = paths["ann@example.test"]
    forged = good[:-len(BOUNCE_DOMAIN) - 2] + ("a" if good[-len(BOUNCE_DOMAIN) - 2] != "a"
                                               else "b") + "@" + BOUNCE_DOMAIN
    code, _ = rcpt_reply(relay.ports["bounces"], forged)
    assert code == 550
    assert rcpt_reply(relay.ports["bounces"], good)[0] == 250
    assert rcpt_reply(relay.ports["bounces"], good.upper())[0] == 250  # case folded on the way


def test_simulation_hook_for_test_mode(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    mid, _ = _delivered(relay, sinks, client_ctx, ["ann@example.test", "bob@example.test"])
    rows = {r["address"]: r["id"] for r in relay.store.admin.recipients(mid)}
    intake = relay.relay.inbound.bounce_handler.intake
    assert relay.run(intake.simulate(rows["ann@example.test"], "hard_bounce")) == "bounced"
    assert relay.run(intake.simulate(rows["bob@example.test"], "complaint")) == "complained"
    states = {r["address"]: r["state"] for r in relay.store.admin.recipients(mid)}
    assert states == {"ann@example.test": "bounced", "bob@example.test": "delivered"}
    reasons = {s.address: s.reason for s in relay.store.suppressions.list(
        relay.tenant.channel.id)}
    assert reasons == {"ann@example.test": "hard_bounce", "bob@example.test": "complaint"}
