"""Real SMTP clients for the inbound tests: smtplib sessions and a raw-socket client.

    s = session(relay, ctx)                 # STARTTLS on 587, EHLO, AUTH as the tenant
    line = send(s, sender, [rcpt], body)    # the final reply line, e.g. "250 2.0.0 Ok: ..."
    raw = Raw(port); raw.reply(); raw.send(b"EHLO x\\r\\n"); raw.reply()
"""

from __future__ import annotations

import base64
import contextlib
import smtplib
import socket
import ssl

from helo_smtp.errors import CATALOG
from helo_smtp.models import AccountStatus
from tests.support.net import NET
from tests.support.relay import make_tenant

TIMEOUT = 10.0


def source_ip(n: int) -> str:
    """A loopback client address of this xdist worker's block (127.0.N.n)."""
    return f"{NET}{n}"


def session(relay, ctx: ssl.SSLContext, listener: str = "submission", *, login: bool = True,
            username: str | None = None, secret: str | None = None,
            source: str | None = None) -> smtplib.SMTP:
    """An smtplib session over TLS (STARTTLS, or implicit on "submissions"), logged in."""
    port = relay.ports[listener]
    src = (source, 0) if source else None
    if listener == "submissions":
        s: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=TIMEOUT,
                                           source_address=src)
        s.ehlo("client.test")
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT, source_address=src)
        s.ehlo("client.test")
        s.starttls(context=ctx)
        s.ehlo("client.test")
    if login:
        s.login(username or relay.tenant.username, secret or relay.tenant.secret)
    return s


def line(code: int, text: bytes) -> str:
    return f"{code} {text.decode()}"


def send(s: smtplib.SMTP, sender: str, rcpts: list[str], body: bytes | str,
         mail_options: tuple[str, ...] = ()) -> str:
    """One transaction; the first refusal (MAIL, every RCPT refused, DATA) or the final line."""
    code, text = s.mail(sender, list(mail_options))
    if code != 250:
        s.rset()
        return line(code, text)
    refused = []
    for r in rcpts:
        code, text = s.rcpt(r)
        if code != 250:
            refused.append(line(code, text))
    if len(refused) == len(rcpts):
        s.rset()
        return refused[0]
    data = body.encode() if isinstance(body, str) else body
    code, text = s.data(data)
    return line(code, text)


def message(sender: str = "app@sender.test", to: str = "user@example.test",
            subject: str = "Hello", body: str = "Hi there.\n",
            headers: dict[str, str] | list[tuple[str, str]] | None = None) -> bytes:
    """A small text message with CRLF line ends; ``headers`` are written as given, unfolded."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
             *(f"{name}: {value}" for name, value in items),
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "",
             body.replace("\r\n", "\n").replace("\n", "\r\n")]
    return "\r\n".join(lines).encode()


def accepted(reply: str) -> str:
    """The message id of a 250 accept line (fails on anything else)."""
    prefix = "250 2.0.0 Ok: queued as "
    assert reply.startswith(prefix), reply
    return reply[len(prefix):].split(";")[0]


class Raw:
    """A raw-socket SMTP client for protocol abuse: exact bytes out, whole replies in."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None = None,
                 source: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                             source_address=(source, 0) if source else None)
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="relay.test")
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def reply(self) -> str:
        """One complete reply (multi-line joined with newlines); '' at EOF."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    return "\n".join(lines)
            raw, self.buf = self.buf.split(b"\r\n", 1)
            text = raw.decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def cmd(self, command: str | bytes) -> str:
        data = command.encode() if isinstance(command, str) else command
        self.send(data + b"\r\n")
        return self.reply()

    def data(self, content: bytes) -> str:
        """Send message content after a 354: dot-stuffed, then the end-of-data line."""
        if content.startswith(b"."):
            content = b"." + content
        content = content.replace(b"\r\n.", b"\r\n..")
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        self.send(content + b".\r\n")
        return self.reply()

    def replies_until_eof(self) -> list[str]:
        out = []
        while True:
            r = self.reply()
            if not r:
                return out
            out.append(r)

    def starttls(self, ctx: ssl.SSLContext) -> None:
        assert not self.buf, self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname="relay.test")

    def login(self, ctx: ssl.SSLContext, username: str, secret: str) -> None:
        """EHLO, STARTTLS, EHLO, AUTH PLAIN on a fresh 587 connection."""
        assert self.reply().startswith("220 ")
        self.cmd("EHLO client.test")
        assert self.cmd("STARTTLS") == CATALOG["tls_ready"].line()
        self.starttls(ctx)
        self.cmd("EHLO client.test")
        token = base64.b64encode(f"\0{username}\0{secret}".encode()).decode()
        assert self.cmd(f"AUTH PLAIN {token}") == CATALOG["auth_ok"].line()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def other_tenant(store, name: str, domain: str,
                 status: AccountStatus = AccountStatus.ACTIVE):
    """A second account (with its own verified domain, channel and credential)."""
    return make_tenant(store, name=name, domain=domain, status=status, dkim_bits=1024)


def messages(store) -> list[dict]:
    return store.admin.messages(limit=10_000)


def recipients(store, message_id: str) -> list[str]:
    return [r["address"] for r in store.admin.recipients(message_id)]
