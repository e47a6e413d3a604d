"""POST /send/transactional and friends over a real TLS socket, delivered to the real sinks."""

from __future__ import annotations

import base64
import email
import email.policy

from tests.support.outbound import wait_states


def _delivered(a, mid: str, n: int = 1) -> None:
    wait_states(a.store, mid, lambda c: c == {"delivered": n})


def _sunk(sinks, rcpt: str) -> email.message.EmailMessage:
    for sink in sinks:
        for m in sink.h.messages:
            if rcpt in m["rcpt_tos"]:
                return email.message_from_bytes(m["data"], policy=email.policy.default)
    raise AssertionError(f"nothing delivered to {rcpt}")


def test_send_builds_one_message_and_delivers_it(api, sinks):
    a = api()
    png = base64.b64encode(b"\x89PNG fake").decode()
    status, body = a.send(a.message(
        ["ann@example.test"], **{"from": {"email": a.relay.tenant.sender, "name": "Zoë App"}},
        cc=[{"email": "bob@example.test", "name": "Bob"}], bcc=["cy@example.test"],
        subject="Your receipt", html="<p>Hi <img src='cid:logo'></p>", tags=["receipt"],
        metadata={"order": "42"}, headers={"X-Order": "42"},
        attachments=[{"filename": "r.pdf", "content": base64.b64encode(b"%PDF").decode(),
                      "content_type": "application/pdf"},
                     {"filename": "logo.png", "content": png, "content_type": "image/png",
                      "content_id": "logo"}]))
    assert status == 200, body
    assert body["status"] == "accepted" and body["suppressions"] == []
    mid = body["messageId"]
    _delivered(a, mid, 3)
    msg = _sunk(sinks, "cy@example.test")
    assert str(msg["From"]) == f"Zoë App <{a.relay.tenant.sender}>"
    assert "=?utf-8?" in msg.as_string().split("\n\n")[0]  # RFC 2047 on the wire
    assert msg["Bcc"] is None and msg["X-Order"] == "42"
    assert not [k for k in msg if k.lower().startswith("x-helo-")]
    assert msg.get_content_type() == "multipart/mixed"
    types = [p.get_content_type() for p in msg.walk()]
    assert types[:5] == ["multipart/mixed", "multipart/alternative", "text/plain",
                         "multipart/related", "text/html"]
    assert "image/png" in types and "application/pdf" in types
    row = a.store.admin.message(mid)
    assert row["status"] == "accepted"


def test_client_text_never_makes_a_header(api):
    a = api()
    for fields in ({"subject": "hi\r\nBcc: evil@example.test"},
                   {"from": "App <app@sender.test>\nBcc: evil@example.test"},
                   {"headers": {"X-Note": "a\r\nBcc: evil@example.test"}},
                   {"headers": {"X-Helo-Channel-Id": "x"}},
                   {"to": [{"email": "ann@example.test", "name": "A\r\nBcc: e@x.test"}]}):
        status, body = a.send(a.message(**fields))
        assert (status, body["errorCode"]) == (400, "validation_error"), fields
        assert "evil" not in body["errorMessage"]


def test_malformed_json_and_fields_are_400_naming_the_field(api):
    a = api()
    status, body, _ = a.call("POST", "/send/transactional", data=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert (status, body["errorCode"]) == (400, "validation_error")
    status, body = a.send({**a.message(), "to": []})
    assert status == 400 and "field to" in body["errorMessage"]
    status, body = a.send(a.message(template={"subject": "x", "data": {}}))
    assert status == 400 and "field template" in body["errorMessage"]
    status, body = a.send(a.message(to=[f"u{i}@example.test" for i in range(51)]))
    assert (status, body["errorCode"]) == (400, "validation_error")


def test_bad_missing_and_revoked_keys_are_401(api):
    a = api()
    for key in ("helo_nope_nope", "Basic abc", None):
        status, body, _ = a.call("POST", "/send/transactional", a.message(), key=key)
        assert (status, body["errorCode"]) == (401, "unauthorized"), key
    key_id = a.key.split("_")[1]
    assert a.send(a.message())[0] == 200
    a.store.api_keys.revoke(key_id)
    assert a.send(a.message())[0] == 401
    assert a.store.api_keys.get(key_id).last_used_at is not None


def test_failed_keys_lock_the_client_ip(api):
    a = api(api={"auth_failures_per_ip": 3})
    for _ in range(3):
        assert a.send(a.message(), key="helo_0_bad")[0] == 401
    status, body, headers = a.call("POST", "/send/transactional", a.message())
    assert (status, body["errorCode"]) == (429, "auth_locked")  # even with a good key
    assert int(headers["Retry-After"]) > 0


def test_body_over_the_cap_is_413(api):
    a = api(api={"max_body_bytes": 4096})
    status, body = a.send(a.message(text="x" * 8000))
    assert (status, body["errorCode"]) == (413, "message_too_large")


def test_batch_items_are_judged_alone(api):
    a = api()
    good = a.message(["ann@example.test"])
    status, body, _ = a.call("POST", "/send/transactional/batch", {"requests": [
        good, a.message(subject="a\nb"), a.message(["bob@example.test"], **{
            "from": "app@unverified.test"})]})
    assert status == 200
    codes = [r.get("errorCode", r["status"]) for r in body["responses"]]
    assert codes == ["accepted", "validation_error", "domain_unverified"]
    _delivered(a, body["responses"][0]["messageId"])
    status, body, _ = a.call("POST", "/send/transactional/batch",
                             {"requests": [good] * 501})
    assert (status, body["errorCode"]) == (413, "message_too_large")


def test_broadcast_endpoint_groups_by_name(api):
    a = api()
    status, body, _ = a.call("POST", "/send/broadcast",
                             a.message(broadcast="spring-sale"))
    assert status == 200, body
    assert a.store.admin.message(body["messageId"])["mail_type"] == "broadcast"
    status, body = a.send(a.message(broadcast="spring-sale"))
    assert (status, body["errorCode"]) == (400, "validation_error")  # not on transactional


def test_idempotency_replays_and_conflicts_and_is_shared_with_smtp(api):
    a = api()
    hdr = {"X-Helo-Idempotency-Key": "order-42"}
    first = a.send(a.message(), headers=hdr)
    again = a.send(a.message(), headers=hdr)
    assert first[0] == again[0] == 200 and first[1]["messageId"] == again[1]["messageId"]
    status, body = a.send(a.message(subject="other"), headers=hdr)
    assert (status, body["errorCode"]) == (409, "idempotency_conflict")
    # one namespace per account: the SMTP door sees the key the API used
    code = a.smtp_code(["ann@example.test"], headers={"X-Helo-Idempotency-Key": "order-42"})
    assert code == "idempotency_conflict"
    _delivered(a, first[1]["messageId"])


def test_unknown_path_is_json_404(api):
    a = api()
    status, body, _ = a.call("GET", "/nope")
    assert (status, body["errorCode"]) == (404, "not_found")
