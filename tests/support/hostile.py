"""A message whose header fields break naive re-serialisation, for the byte-preservation tests
(SPEC §14 "Rewriting"): odd folding, encoded words, raw UTF-8, long lines, trailing white space,
lower-case names, and the CVE-2024-6923 injection (an encoded CR LF in a header long enough
for the ``email`` generator to refold it, which then writes ``From: boss@beta.test`` raw).
"""

from __future__ import annotations

from helo_smtp.inbound import headers

INJECTION = (b"X-Custom: " + b"a " * 40 + b"=?utf-8?q?x=0D=0AFrom:_boss@beta.test?=\r\n")

TRICKY_FIELDS = [
    b'From: "Acme, Inc." <app@sender.test>\r\n',
    b"To: user@example.test\r\n",
    b"Subject: Hello {{name}}\r\n",
    b"Date: Fri, 04 Dec 2026 17:00:00 +0000\r\n",
    b"Message-ID: <tricky-1@sender.test>\r\n",
    b"X-Folded: one\r\n\ttwo\r\n   three\r\n",
    b"X-Encoded: =?utf-8?q?caf=C3=A9?= =?iso-8859-1?q?na=EFve?=\r\n",
    b"X-Long: " + b"word" * 80 + b"\r\n",
    b"x-lower-case:   spaced   \r\n",
    "X-UTF8: raw ünïcode\r\n".encode(),
    INJECTION,
    b"MIME-Version: 1.0\r\n",
    b'Content-Type: multipart/alternative; boundary="b1"\r\n',
]

BODY = (b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"Hi {{name}}, see https://shop.example.test/a\r\n"
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
        b"quoted-printable\r\n\r\n<html><body><p>Hi {{name}}</p>"
        b'<a href=3D"https://shop.example.test/a">shop</a></body></html>\r\n'
        b"--b1--\r\n")


def tricky_message(*controls: bytes) -> bytes:
    """The tricky message with extra (control) fields placed after the Subject."""
    fields = [*TRICKY_FIELDS[:3], *controls, *TRICKY_FIELDS[3:]]
    return b"".join(fields) + b"\r\n" + BODY


def kept_fields(raw: bytes, drop: frozenset[str]) -> list[bytes]:
    """The raw header fields of ``raw`` (CRLF included) without those named in ``drop``."""
    fields, _ = headers.split(raw)
    return [f.raw for f in fields if f.name not in drop]
