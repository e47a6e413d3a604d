"""Reading what comes back to the return path: a ``Report`` from the raw bytes.

- **DSN** (RFC 3464): ``multipart/report; report-type=delivery-status``. The
  ``message/delivery-status`` part is a per-message block and one block per recipient with
  ``Final-Recipient``, ``Action`` (failed, delayed, delivered, relayed, expanded), ``Status``
  (RFC 3463) and ``Diagnostic-Code: smtp; 550 5.1.1 ...`` (the remote server's reply).
- **ARF** (RFC 5965): ``multipart/report; report-type=feedback-report``, a
  ``message/feedback-report`` part (``Feedback-Type: abuse``, ``Original-Rcpt-To``, ...) and
  the original message or its headers, where our VERP return path sits in ``Return-Path``.
- **Text**: anything else (old Exim and qmail bounces, auto-replies with a reply code in the
  text) keeps its text; the intake classifies it with the delivery classifier.

Nothing here raises on bad input: a part that cannot be read is skipped, and a message with
no usable part is a ``text`` report of whatever text it has.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from dataclasses import dataclass, field

TEXT_LIMIT = 4000  # characters of bounce text kept
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CODE = re.compile(r"(?<![\d.])([45]\d\d)(?:[ -]|$)")
_BOUNCE_SUBJECT = re.compile(r"undeliver|returned mail|failure|failed|delivery status|"
                             r"not delivered|rejected|delayed", re.IGNORECASE)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)
_DELAY_WORDS = re.compile(r"\b(delayed|delay|will (be )?retr(y|ied)|still trying|"
                          r"not yet been delivered)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Item:
    """One recipient's line of a report."""

    action: str  # failed | delayed (others are ignored)
    recipient: str  # as the report names it ('' when it does not)
    status: str | None  # enhanced status
    code: int | None  # the remote reply code from Diagnostic-Code, if any
    text: str  # the diagnostic text (or the bounce text)
    remote: str | None = None  # Remote-MTA


@dataclass(slots=True)
class Report:
    kind: str  # dsn | arf | text (a bounce in free text) | other (no sign of a bounce)
    items: list[Item] = field(default_factory=list)
    feedback_type: str = ""
    original: str = ""  # headers (and text) of the original message, to find a VERP address
    text: str = ""


def _addr(value: str | None) -> str:
    """``rfc822; ann@example.com`` -> ``ann@example.com``."""
    if not value:
        return ""
    v = value.split(";", 1)[-1].strip().strip("<>")
    return v.lower()


def _diagnostic(value: str | None) -> tuple[int | None, str]:
    """``smtp; 550-5.1.1 The email account ...`` -> (550, the text)."""
    if not value:
        return None, ""
    text = " ".join(value.split(";", 1)[-1].split())
    m = _CODE.match(text)
    return (int(m.group(1)) if m else None), text


def status_in(text: str) -> str | None:
    m = _STATUS.search(text)
    return ".".join(m.groups()) if m else None


def _fields(part: email.message.Message) -> list[email.message.Message]:
    """The header blocks of a ``message/delivery-status`` or ``feedback-report`` part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, email.message.Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [email.message_from_string(b + "\n", policy=email.policy.compat32) for b in blocks
            if b.strip()]


def _dsn_items(part: email.message.Message) -> list[Item]:
    items = []
    for block in _fields(part)[1:] or _fields(part):  # the first block is per-message
        action = (block.get("Action") or "").strip().lower()
        if action not in ("failed", "delayed"):
            continue
        code, text = _diagnostic(block.get("Diagnostic-Code"))
        status = (block.get("Status") or "").strip() or None
        if status and not _STATUS.fullmatch(status):
            status = status_in(status)
        rcpt = _addr(block.get("Final-Recipient")) or _addr(block.get("Original-Recipient"))
        items.append(Item(action, rcpt, status, code, text or (status or ""),
                          _addr(block.get("Remote-MTA")) or None))
    return items


def _text_of(msg: email.message.Message) -> str:
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_type() != \
                "text/rfc822-headers":
            try:
                payload = part.get_payload(decode=True) or b""
                out.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
            except (LookupError, ValueError):
                continue
        if sum(map(len, out)) > TEXT_LIMIT:
            break
    return "\n".join(out)[:TEXT_LIMIT]


def _original(msg: email.message.Message) -> str:
    for part in msg.walk():
        ct = part.get_content_type()
        if ct in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return str(payload[0])[:20000]
            raw = part.get_payload(decode=True)
            return (raw or b"").decode("utf-8", "replace")[:20000]
    return ""


def parse(raw: bytes) -> Report:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    text = _text_of(msg)
    report_type = (msg.get_param("report-type") or "") if msg.get_content_type() == \
        "multipart/report" else ""
    report_type = str(report_type).lower()
    for part in msg.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            items = _dsn_items(part)
            if items:
                return Report("dsn", items, original=_original(msg), text=text)
        if ct == "message/feedback-report" or report_type == "feedback-report":
            blocks = _fields(part) if ct == "message/feedback-report" else []
            fb = blocks[0] if blocks else None
            ftype = (fb.get("Feedback-Type") if fb else "") or ""
            rcpt = _addr(fb.get("Original-Rcpt-To")) if fb else ""
            if ct == "message/feedback-report":
                return Report("arf", [Item("complained", rcpt, None, None, text[:500])],
                              feedback_type=ftype.strip().lower(), original=_original(msg),
                              text=text)
    return _text_report(msg, text)


def _text_report(msg: email.message.Message, text: str) -> Report:
    """A bounce without a DSN part: the first status and reply code in its text. Mail with
    no sign of a bounce at all (an auto-reply: RFC 3834 §4 sends those to the return path
    too) is an ``other`` report: kept, but it changes no recipient."""
    subject = str(msg.get("Subject") or "")
    action = "delayed" if _DELAY_WORDS.search(subject) else "failed"
    code_m = _CODE.search(text)
    status = status_in(text)
    diag = _diagnostic_line(text)
    sender = str(msg.get("From") or "")
    bounce = bool(code_m or status or _BOUNCE_SUBJECT.search(subject)
                  or _DAEMON.search(sender))
    return Report("text" if bounce else "other",
                  [Item(action, "", status, int(code_m.group(1)) if code_m else None, diag)],
                  original=_original(msg) or text, text=text)  # Exim copies it inline


def _diagnostic_line(text: str) -> str:
    """The most telling line: the first with a reply code or enhanced status, else the start
    of the text."""
    for line in text.splitlines():
        if _STATUS.search(line) or _CODE.search(line.strip()):
            return " ".join(line.split())[:500]
    return " ".join(text.split())[:500]
