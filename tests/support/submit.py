"""Submit mail to a running relay the way an application does: smtplib, STARTTLS, AUTH.

    mid = submit(relay, ctx, ["a@example.test"], headers={"X-Helo-Tag": "welcome"})
    with Submitter(relay, ctx) as s:       # one session, many messages
        ids = [s.send(["b@example.test"]) for _ in range(10)]
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

TIMEOUT = 30.0  # a reply timeout: only how long a broken test takes to fail
_QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+?)(;|$)")


def build(sender: str, rcpts: list[str], *, subject: str = "hello",
          body: str = "Hello there.\n", headers: dict[str, str] | None = None,
          html: str | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = ", ".join(rcpts)
    m["Subject"] = subject
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body)
    if html is not None:
        m.add_alternative(html, subtype="html")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


class Submitter:
    """One authenticated submission session to ``relay`` (a tests.support.relay.RelayHandle or
    anything with ``ports`` and ``tenant``)."""

    def __init__(self, relay: Any, ctx: ssl.SSLContext, listener: str = "submission",
                 port: int | None = None) -> None:
        self.relay = relay
        self.s = smtplib.SMTP("127.0.0.1", port or relay.ports[listener], timeout=TIMEOUT)
        self.s.ehlo("app.test")
        self.s.starttls(context=ctx)
        self.s.ehlo("app.test")
        self.s.login(relay.tenant.username, relay.tenant.secret)

    def send(self, rcpts: list[str], *, sender: str | None = None, **kw: Any) -> str:
        """One message; returns the Helo messageId from the 250 line."""
        sender = sender or self.relay.tenant.sender
        data = kw.pop("raw", None) or build(sender, rcpts, **kw)
        code, text = self.s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = self.s.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = self.s.data(data)
        line = f"{code} {text.decode()}"
        m = _QUEUED.match(line)
        assert m, line
        return m.group(1)

    def close(self) -> None:
        try:
            self.s.quit()
        except smtplib.SMTPException:
            self.s.close()

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def submit(relay: Any, ctx: ssl.SSLContext, rcpts: list[str], **kw: Any) -> str:
    """One message in its own session; returns its messageId."""
    listener = kw.pop("listener", "submission")
    with Submitter(relay, ctx, listener) as s:
        return s.send(rcpts, **kw)
