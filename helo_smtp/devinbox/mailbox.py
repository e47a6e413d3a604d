"""The dev inbox's storage: a Maildir (``mailbox.Maildir``), one file per SMTP transaction.

Each file is the message as it arrived at the sink, after ``Return-Path`` and one
``Delivered-To`` per recipient, as Postfix's local delivery writes them. A message's inbox ID
is the relay's messageId (the ``id`` of the relay's own ``Received`` field: what the ``250``
reply named), with ``-2``, ``-3``... for further copies of the same message (one per
destination domain, or one per recipient when tracking personalizes it).
"""

from __future__ import annotations

import email.parser
import email.policy
import mailbox
import re
from dataclasses import dataclass
from pathlib import Path

_RECEIVED_ID = re.compile(r"\bid\s+([A-Za-z0-9._-]+)")


@dataclass(frozen=True, slots=True)
class Entry:
    """One message in the dev inbox."""

    id: str
    key: str  # the Maildir file's key
    received_at: float
    sender: str
    recipients: list[str]
    subject: str
    from_: str
    size: int
    signed: bool
    raw: bytes

    def summary(self) -> dict[str, object]:
        return {"id": self.id, "received_at": self.received_at, "from": self.from_,
                "sender": self.sender, "recipients": self.recipients, "subject": self.subject,
                "size": self.size, "dkim_signed": self.signed}


def envelope_fields(sender: str, recipients: list[str]) -> bytes:
    """``Return-Path`` and ``Delivered-To`` lines to put before a delivered message."""
    lines = [f"Return-Path: <{sender}>"] + [f"Delivered-To: {r}" for r in recipients]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def store(path: str, sender: str, recipients: list[str], data: bytes) -> str:
    """File one delivered message; returns its Maildir key (blocking: call in a thread)."""
    box = mailbox.Maildir(path, factory=None, create=True)
    return box.add(envelope_fields(sender, recipients) + data)


def entries(path: str) -> list[Entry]:
    """Every message, oldest first, with its inbox ID."""
    files = sorted((f.stat().st_mtime, f.name.split(":", 1)[0], f)
                   for sub in ("new", "cur") if Path(path, sub).is_dir()
                   for f in Path(path, sub).iterdir() if not f.name.startswith("."))
    seen: dict[str, int] = {}
    out = []
    for mtime, key, file in files:
        raw = file.read_bytes()
        base = _relay_id(raw) or f"m{len(out) + 1}"
        seen[base] = seen.get(base, 0) + 1
        ident = base if seen[base] == 1 else f"{base}-{seen[base]}"
        out.append(_entry(ident, key, mtime, raw))
    return out


def find(path: str, ident: str) -> Entry | None:
    """The message with this inbox ID (or Maildir key)."""
    for e in entries(path):
        if ident in (e.id, e.key):
            return e
    return None


def _relay_id(raw: bytes) -> str | None:
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    for received in msg.get_all("Received") or []:
        m = _RECEIVED_ID.search(" ".join(str(received).split()))
        if m:
            return m.group(1)
    return None


def _entry(ident: str, key: str, mtime: float, raw: bytes) -> Entry:
    msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    return Entry(ident, key, mtime, str(msg.get("Return-Path", "")).strip("<>"),
                 [str(v) for v in msg.get_all("Delivered-To") or []],
                 str(msg.get("Subject", "")), str(msg.get("From", "")), len(raw),
                 msg.get("DKIM-Signature") is not None, raw)


def prepare(path: str) -> None:
    """Create the Maildir (``new``, ``cur``, ``tmp``) if it is missing."""
    mailbox.Maildir(path, factory=None, create=True)


def clear(path: str) -> int:
    """Delete every message; returns how many there were."""
    gone = 0
    for sub in ("new", "cur"):
        d = Path(path, sub)
        for f in d.iterdir() if d.is_dir() else ():
            if not f.name.startswith("."):
                f.unlink()
                gone += 1
    return gone
