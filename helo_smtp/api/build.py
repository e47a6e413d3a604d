"""JSON request -> envelope + one RFC 5322 message, built with the email package.

Client text never reaches a header unchecked: CR, LF and NUL in any header value are a
``validation_error``; display names and the subject are RFC 2047-encoded by the email
package's generator when they are not ASCII; addresses are checked as SMTP checks them. The
Helo fields (tags, metadata, tracking, template data, broadcast, channel, idempotency key) are
written as the control headers of SPEC §4, so ``message.read`` applies the very same limits to
both doors, and ``message.finalize`` strips them before signing and delivery.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import email.utils
import hashlib
import json
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from helo_smtp.errors import ValidationError
from helo_smtp.inbound.addresses import check_mailbox

MAX_RECIPIENTS = 50
_POLICY = email.policy.SMTP.clone(max_line_length=998)
_BAD = ("\r", "\n", "\0")


def invalid(field: str) -> ValidationError:
    """``validation_error`` naming one of our own field names (never client text)."""
    return ValidationError(f"field {field} is missing or invalid")


@dataclass(slots=True)
class Built:
    sender: str
    recipients: list[str]
    data: bytes
    fingerprint: str  # over the canonical JSON body: same body, same key -> replay (§11)


def _text(body: dict[str, Any], field: str, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise invalid(field)
        return None
    if not isinstance(value, str):
        raise invalid(field)
    return value


def _header_text(value: str, field: str) -> str:
    if any(ch in value for ch in _BAD):
        raise invalid(field)
    return value


def _address(value: Any, field: str) -> Address:
    """``"Name <addr>"``, ``"addr"`` or ``{"email", "name"}`` -> a checked ``Address``."""
    if isinstance(value, dict):
        addr, name = value.get("email"), value.get("name") or ""
    elif isinstance(value, str):
        _header_text(value, field)
        try:  # the email package's RFC 5322 parser, as for a header
            parsed = email.policy.default.header_factory("To", value)
            (one,) = parsed.addresses
        except (ValueError, IndexError, TypeError):
            raise invalid(field) from None
        if parsed.defects:
            raise invalid(field)
        addr, name = one.addr_spec, one.display_name
    else:
        raise invalid(field)
    if not isinstance(addr, str) or not isinstance(name, str):
        raise invalid(field)
    _header_text(name, field)
    if check_mailbox(addr, True) is not None:
        raise invalid(field)
    local, _, domain = addr.rpartition("@")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError):
        raise invalid(field) from None


def _addresses(body: dict[str, Any], field: str) -> list[Address]:
    value = body.get(field)
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list):
        raise invalid(field)
    return [_address(v, field) for v in value]


def _content(body: dict[str, Any]) -> tuple[str | None, str | None, str | None, Any]:
    """(subject, html, text, template data): plain fields or ``template``, never both."""
    template = body.get("template")
    plain = any(body.get(f) is not None for f in ("subject", "html", "text"))
    if template is None:
        return _text(body, "subject"), _text(body, "html"), _text(body, "text"), None
    if plain or not isinstance(template, dict):
        raise invalid("template")
    data = template.get("data", {})
    if not isinstance(data, dict):
        raise invalid("template.data")
    return (_text(template, "subject"), _text(template, "html"), _text(template, "text"),
            data)


def _controls(msg: EmailMessage, body: dict[str, Any], data: Any, broadcast: bool) -> None:
    tags = body.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and "," not in t
                                             for t in tags):
        raise invalid("tags")
    for tag in tags:
        msg["X-Helo-Tag"] = _header_text(tag, "tags")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise invalid("metadata")
    for key, value in metadata.items():
        if not isinstance(value, str | int | float) or not key.isascii() or ":" in key:
            raise invalid("metadata")
        msg[f"X-Helo-Metadata-{_header_text(key, 'metadata')}"] = _header_text(
            str(value), "metadata")
    tracking = body.get("tracking") or {}
    if not isinstance(tracking, dict):
        raise invalid("tracking")
    for key, name in (("opens", "X-Helo-Track-Opens"), ("links", "X-Helo-Track-Links")):
        if key in tracking:
            if not isinstance(tracking[key], bool):
                raise invalid(f"tracking.{key}")
            msg[name] = "true" if tracking[key] else "false"
    if data is not None:
        msg["X-Helo-Template-Data"] = json.dumps(data, ensure_ascii=True)
    name = body.get("broadcast")
    if name is not None:
        if not broadcast or not isinstance(name, str):
            raise invalid("broadcast")
        msg["X-Helo-Broadcast"] = _header_text(name, "broadcast")


def _custom_headers(msg: EmailMessage, body: dict[str, Any]) -> None:
    headers = body.get("headers") or {}
    if isinstance(headers, list):  # Postmark's form: [{"Name": ..., "Value": ...}]
        try:
            headers = {h.get("Name", h.get("name")): h.get("Value", h.get("value"))
                       for h in headers}
        except AttributeError:
            raise invalid("headers") from None
    if not isinstance(headers, dict):
        raise invalid("headers")
    for name, value in headers.items():
        if (not isinstance(name, str) or not isinstance(value, str) or not name
                or not all(33 <= ord(ch) <= 126 and ch != ":" for ch in name)):
            raise invalid("headers")
        low = name.lower()
        if low.startswith(("x-helo-", "x-pm-")) or low in _OURS:
            raise invalid("headers")  # the JSON fields say these; a header may not
        msg[name] = _header_text(value, "headers")


_OURS = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
                   "mime-version", "content-type", "content-transfer-encoding", "received",
                   "dkim-signature", "sender", "return-path"})


def _attachment(item: Any) -> tuple[bytes, str, str, str, str | None]:
    """(content, maintype, subtype, filename, content id) of one checked attachment."""
    if not isinstance(item, dict):
        raise invalid("attachments")
    filename = item.get("filename")
    ctype = item.get("content_type") or "application/octet-stream"
    cid = item.get("content_id")
    if (not isinstance(filename, str) or not filename or not isinstance(ctype, str)
            or ctype.count("/") != 1 or (cid is not None and not isinstance(cid, str))):
        raise invalid("attachments")
    _header_text(filename, "attachments.filename")
    if cid is not None:
        _header_text(cid, "attachments.content_id")
        cid = f"<{cid.strip('<>')}>"
    try:
        raw = base64.b64decode(item.get("content") or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise invalid("attachments.content") from None
    maintype, subtype = ctype.split("/")
    if not maintype or not subtype:
        raise invalid("attachments.content_type")
    return raw, maintype, subtype, filename, cid


def _body(msg: EmailMessage, body: dict[str, Any], text: str | None,
          html: str | None) -> None:
    """text/plain and/or text/html (multipart/alternative for both, RFC 2046 §5.1.4); inline
    parts (``content_id``) go into multipart/related with the HTML (RFC 2387); the other
    attachments into multipart/mixed around it all."""
    items = body.get("attachments") or []
    if not isinstance(items, list):
        raise invalid("attachments")
    parts = [_attachment(item) for item in items]
    inline = [p for p in parts if p[4]]
    if html is not None:
        html_part = EmailMessage(policy=_POLICY) if text is not None else msg
        html_part.set_content(html, subtype="html", charset="utf-8")
        for raw, maintype, subtype, filename, cid in inline:
            html_part.add_related(raw, maintype=maintype, subtype=subtype,
                                  filename=filename, cid=cid, disposition="inline")
        if text is not None:
            msg.set_content(text, subtype="plain", charset="utf-8")
            msg.make_alternative()
            msg.attach(html_part)
    else:
        msg.set_content(text or "", subtype="plain", charset="utf-8")
        for raw, maintype, subtype, filename, cid in inline:
            msg.add_related(raw, maintype=maintype, subtype=subtype, filename=filename,
                            cid=cid, disposition="inline")
    for raw, maintype, subtype, filename, cid in parts:
        if not cid:
            msg.add_attachment(raw, maintype=maintype, subtype=subtype, filename=filename)


def build(body: Any, *, broadcast: bool, channel_id: str | None,
          idempotency_key: str | None) -> Built:
    """One message from one JSON request (raises ``ValidationError`` naming the field)."""
    if not isinstance(body, dict):
        raise invalid("body")
    sender = _address(body.get("from"), "from")
    to, cc, bcc = (_addresses(body, f) for f in ("to", "cc", "bcc"))
    seen: dict[str, None] = {}
    for a in (*to, *cc, *bcc):
        seen.setdefault(f"{a.username}@{a.domain.lower()}")
    recipients = list(seen)
    if not recipients:
        raise invalid("to")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationError(f"more than {MAX_RECIPIENTS} recipients")
    subject, html, text, data = _content(body)
    if html is None and text is None:
        raise invalid("html")
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    reply_to = _addresses(body, "reply_to")
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = _header_text(subject or "", "subject")
    msg["Date"] = email.utils.formatdate(time.time(), usegmt=True)
    msg["MIME-Version"] = "1.0"
    _custom_headers(msg, body)
    _controls(msg, body, data, broadcast)
    if channel_id is not None:
        msg["X-Helo-Channel-Id"] = _header_text(channel_id, "X-Helo-Channel-Id")
    if idempotency_key is not None:
        msg["X-Helo-Idempotency-Key"] = _header_text(idempotency_key, "X-Helo-Idempotency-Key")
    _body(msg, body, text, html)
    try:
        data_bytes = msg.as_bytes(policy=_POLICY)
    except (ValueError, TypeError, UnicodeError):
        raise invalid("body") from None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    fingerprint = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return Built(f"{sender.username}@{sender.domain}", recipients, data_bytes, fingerprint)
