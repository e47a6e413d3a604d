"""Python's own smtplib and email API, the way an application uses them: ``send_message`` of
an ``EmailMessage`` with attachments (STARTTLS on 587), and with a non-ASCII recipient, for
which smtplib itself asks for SMTPUTF8 (RFC 6531) on 465. The parts arrive intact."""

from __future__ import annotations

import email
import hashlib
import smtplib
from email import policy
from email.message import EmailMessage

from tests.clients.conftest import arrived
from tests.support.figures import record

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + hashlib.sha256(b"png").digest() * 200


def _message(sender: str, to: str, subject: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"App <{sender}>"
    m["To"] = to
    m["Subject"] = subject
    m["X-Helo-Tag"] = "invoice"
    m.set_content("Your invoice is attached.\n.\nA line with a lone dot above.\n")
    m.add_alternative("<p>Your <b>invoice</b> is attached.</p>", subtype="html")
    m.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    m.add_attachment(PNG, maintype="image", subtype="png", filename="logo.png")
    m.add_attachment("naïve ünïcode text\n", filename="notes.txt")
    return m


def _attachments(raw: bytes) -> dict[str, bytes]:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    return {p.get_filename(): p.get_content().replace("\r\n", "\n")  # CRLF on the wire
            if p.get_content_maintype() == "text" else p.get_payload(decode=True)
            for p in parsed.iter_attachments()}


def test_send_message_with_attachments(client_relay, sinks, client_ctx):
    t = client_relay.tenant
    with smtplib.SMTP("127.0.0.1", client_relay.ports["submission"], timeout=10) as s:
        s.starttls(context=client_ctx)
        s.login(t.username, t.secret)
        refused = s.send_message(_message(t.sender, "user@example.test", "Invoice"))
        assert refused == {}
        assert s.noop()[0] == 250
    [stored] = client_relay.store.admin.messages(limit=10)
    got = arrived(sinks[0], stored["id"])
    assert _attachments(got["data"]) == {"invoice.pdf": PDF, "logo.png": PNG,
                                         "notes.txt": "naïve ünïcode text\n"}
    parsed = email.message_from_bytes(got["data"], policy=policy.default)
    assert parsed["X-Helo-Tag"] is None and parsed["Subject"] == "Invoice"
    body = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\n.\nA line with a lone dot above." in body


def test_send_message_smtputf8_recipient(client_relay, sinks, client_ctx):
    t = client_relay.tenant
    rcpt = "δοκιμή@example.test"
    msg = _message(t.sender, f"Δοκιμή <{rcpt}>", "Ünïcode ✓")
    with smtplib.SMTP_SSL("127.0.0.1", client_relay.ports["submissions"], context=client_ctx,
                          timeout=10) as s:
        s.login(t.username, t.secret)
        assert s.has_extn("smtputf8")
        assert s.send_message(msg) == {}  # smtplib adds SMTPUTF8 for the non-ASCII address
    [stored] = client_relay.store.admin.messages(limit=10)
    got = arrived(sinks[0], stored["id"])
    assert got["rcpt_tos"] == [rcpt]
    parsed = email.message_from_bytes(got["data"], policy=policy.default)
    assert parsed["Subject"] == "Ünïcode ✓" and rcpt in str(parsed["To"])
    assert b"UTF8SMTPSA" in got["data"]  # our Received line says how it came in (RFC 6531)
    assert set(_attachments(got["data"])) == {"invoice.pdf", "logo.png", "notes.txt"}
    record("client_smtplib_email", messages=2, attachments_each=3, smtputf8=1)
