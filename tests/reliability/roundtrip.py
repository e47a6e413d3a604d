"""Submit exact bytes to a delivering relay and read back what the sink received.

    rt = RoundTrip(relay, ctx)              # one authenticated raw session (465)
    reply = rt.submit(body)                 # the DATA reply line
    data = rt.delivered(message_id)         # the bytes the sink got, once it got them

The client side is what a careful client does: it dot-stuffs every CRLF line that starts with
"." (RFC 5321 §4.5.2) and ends the data with <CRLF>.<CRLF>; bare CR and LF go as they are.
``normalised`` is what the relay promises to keep: every bare CR or LF made CRLF, a missing
final line end added, and a doubled leading dot after a bare LF made single (smtplib stuffs
there; docs/decisions.md, "Bare-LF messages").
"""

from __future__ import annotations

import base64
import re
import ssl
from typing import Any

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw
from tests.support.waiting import wait_for

_MID = re.compile(rb"^Message-ID: <([0-9a-f-]+)@relay\.test>\r?$", re.IGNORECASE | re.M)
_EOL = re.compile(rb"\r\n|\r|\n")
_BARE_LF_DOTS = re.compile(rb"(?<!\r)\n\.\.")


def normalised(content: bytes) -> bytes:
    wire = content if content.endswith(b"\r\n") else content + b"\r\n"
    return _EOL.sub(b"\r\n", _BARE_LF_DOTS.sub(b"\n.", wire))


def stuffed(content: bytes) -> bytes:
    """The DATA bytes a client sends for ``content``, terminator included."""
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines) + b".\r\n"


def body_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[1]


def only_crlf(message: bytes) -> bool:
    rest = message.replace(b"\r\n", b"")
    return b"\r" not in rest and b"\n" not in rest


class RoundTrip:
    def __init__(self, relay: Any, ctx: ssl.SSLContext, sink: Any) -> None:
        self.relay, self.sink = relay, sink
        t = relay.tenant
        self.raw = Raw(relay.ports["submissions"], ctx)
        assert self.raw.reply().startswith("220 ")
        self.raw.cmd("EHLO client.test")
        token = base64.b64encode(f"\0{t.username}\0{t.secret}".encode()).decode()
        assert self.raw.cmd(f"AUTH PLAIN {token}") == CATALOG["auth_ok"].line()
        self.head = (f"From: {t.sender}\r\nTo: user@example.test\r\nSubject: round trip\r\n"
                     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n").encode()

    def expected_body(self, body: bytes) -> bytes:
        """The body the sink must get for ``body`` sent after this session's headers."""
        return body_of(normalised(self.head + body))

    def submit(self, body: bytes, rcpt: str = "user@example.test") -> str:
        t = self.relay.tenant
        utf8 = " BODY=8BITMIME" if not body.isascii() else ""
        assert self.raw.cmd(f"MAIL FROM:<{t.sender}>{utf8}") == CATALOG["sender_ok"].line()
        assert self.raw.cmd(f"RCPT TO:<{rcpt}>") == CATALOG["recipient_ok"].line()
        assert self.raw.cmd("DATA").startswith("354")
        self.raw.send(stuffed(self.head + body))
        return self.raw.reply()

    def delivered(self, message_id: str, timeout: float = 10.0) -> bytes:
        def find() -> list[bytes]:
            return [m["data"] for m in self.sink.h.messages
                    if (found := _MID.search(m["data"])) and found.group(1).decode() ==
                    message_id]
        got = wait_for(find, timeout, what=f"{message_id} at the sink")
        assert len(got) == 1, f"{message_id} arrived {len(got)} times"
        return got[0]

    def close(self) -> None:
        self.raw.close()
