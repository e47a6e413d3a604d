"""Bounce and complaint fixtures (tests/fixtures/bounces/), filled in and sent as real mail
over SMTP to a relay's ``bounces`` listener."""

from __future__ import annotations

import smtplib
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"


def fixture(name: str, *, return_path: str, recipient: str, message_id: str = "<x@relay.test>",
            fbl: str = "") -> bytes:
    text = (FIXTURES / name).read_text()
    for key, value in (("RETURN_PATH", return_path), ("RECIPIENT", recipient),
                       ("MESSAGE_ID", message_id), ("FBL", fbl or return_path)):
        text = text.replace("{{" + key + "}}", value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def send_report(port: int, rcpt: str, data: bytes, sender: str = "") -> tuple[int, bytes]:
    """One report from a remote MTA (null sender, no AUTH, no TLS); the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.remote.test")
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        if code != 250:
            return code, text
        return s.data(data)


def rcpt_reply(port: int, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.remote.test")
        s.mail("")
        return s.rcpt(rcpt)
