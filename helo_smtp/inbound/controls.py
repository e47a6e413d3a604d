"""The control headers of SPEC §4 (X-Helo-* and the Postmark X-PM-* aliases) and Helo's limits.

``read`` turns the header fields of a parsed message into a validated ``Controls`` value or
raises ``ValidationError`` whose detail names the broken limit. Details are fixed texts from
``DETAILS`` (never client text), so the reply stays inside the catalog's rules.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from helo_smtp.errors import TemplatingError, ValidationError
from helo_smtp.models import MailType

MAX_TAGS, MAX_TAG = 5, 100
MAX_FIELDS, MAX_KEY, MAX_VALUE = 10, 50, 100
MAX_SUBJECT = 256
MAX_CUSTOM = 5000
MAX_IDEMPOTENCY_KEY = 36
MAX_BROADCAST = 100

#: Every detail text a validation_error can carry (checked by tests/qa/test_catalog.py).
DETAILS = {
    "subject": f"Subject longer than {MAX_SUBJECT} characters",
    "tags": f"more than {MAX_TAGS} tags",
    "tag": f"tag longer than {MAX_TAG} characters",
    "fields": f"more than {MAX_FIELDS} metadata fields",
    "key": f"metadata key longer than {MAX_KEY} characters or empty",
    "value": f"metadata value longer than {MAX_VALUE} characters",
    "custom": f"custom headers longer than {MAX_CUSTOM} characters in total",
    "idempotency": f"idempotency key empty or longer than {MAX_IDEMPOTENCY_KEY} characters",
    "broadcast": f"broadcast name empty or longer than {MAX_BROADCAST} characters",
    "channel": "X-Helo-Channel-Id is not a UUID",
    "mail_type": "X-Helo-Mail-Type must be transactional or broadcast",
    "boolean": "tracking headers must be true or false",
    "duplicate": "a control header appears more than once",
    "from": "invalid From header",
    "header": "a header could not be parsed",
}

# Not "custom" (SPEC §4): RFC 5322 and MIME fields, trace fields, and the control headers.
STANDARD = frozenset({
    "date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
    "references", "subject", "comments", "keywords", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-bcc", "resent-message-id",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "content-disposition", "content-language", "content-location",
    "content-md5", "content-base", "content-features", "content-alternative",
    "return-path", "received", "dkim-signature", "authentication-results",
    "arc-seal", "arc-message-signature", "arc-authentication-results", "from ",
})

_SINGLE = {"x-helo-channel-id", "x-helo-mail-type", "x-helo-idempotency-key",
           "x-helo-template-data", "x-helo-broadcast"}


def is_control(name: str) -> bool:
    """X-Helo-* and X-PM-* fields: read, validated and removed before signing and delivery."""
    return name.startswith(("x-helo-", "x-pm-"))


@dataclass(slots=True)
class Controls:
    channel_id: str | None = None
    mail_type: MailType | None = None
    idempotency_key: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    track_opens: bool | None = None
    track_links: bool | None = None
    template_data: dict[str, Any] | None = None
    broadcast: str | None = None


def _invalid(key: str) -> ValidationError:
    return ValidationError(DETAILS[key])


def read(items: Iterable[tuple[str, str]]) -> Controls:
    """Validate the control headers among ``items`` ((name as sent, decoded value) pairs)."""
    c = Controls()
    seen: set[str] = set()
    for name, value in items:
        low = name.lower()
        if not is_control(low):
            continue
        if low in _SINGLE:
            if low in seen:
                raise _invalid("duplicate")
            seen.add(low)
        _apply(c, low, name, value.strip())
    return c


def _apply(c: Controls, low: str, name: str, value: str) -> None:
    if low == "x-helo-channel-id":
        c.channel_id = _uuid(value)
    elif low == "x-helo-mail-type":
        if value.lower() not in ("transactional", "broadcast"):
            raise _invalid("mail_type")
        c.mail_type = MailType(value.lower())
    elif low == "x-helo-idempotency-key":
        if not value or len(value) > MAX_IDEMPOTENCY_KEY:
            raise _invalid("idempotency")
        c.idempotency_key = value
    elif low in ("x-helo-tag", "x-pm-tag"):
        _add_tags(c, value)
    elif low.startswith(("x-helo-metadata-", "x-pm-metadata-")):
        _add_metadata(c, name.split("-", 3)[3] if name.count("-") >= 3 else "", value)
    elif low in ("x-helo-track-opens", "x-pm-trackopens"):
        c.track_opens = _boolean(value)
    elif low == "x-helo-track-links":
        c.track_links = _boolean(value)
    elif low == "x-pm-tracklinks":
        c.track_links = value.lower() != "none"  # Postmark: None = off, any mode = on
    elif low == "x-helo-template-data":
        c.template_data = template_data(value)
    elif low == "x-helo-broadcast":
        if not value or len(value) > MAX_BROADCAST:
            raise _invalid("broadcast")
        c.broadcast = value
    # any other X-Helo-* / X-PM-* field is ours too: removed, never delivered


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _invalid("channel") from None


def _boolean(value: str) -> bool:
    low = value.lower()
    if low not in ("true", "false"):
        raise _invalid("boolean")
    return low == "true"


def _add_tags(c: Controls, value: str) -> None:
    for tag in (t.strip() for t in value.split(",")):
        if not tag:
            continue
        if len(tag) > MAX_TAG:
            raise _invalid("tag")
        if tag not in c.tags:
            c.tags.append(tag)
    if len(c.tags) > MAX_TAGS:
        raise _invalid("tags")


def _add_metadata(c: Controls, key: str, value: str) -> None:
    if not key or len(key) > MAX_KEY:
        raise _invalid("key")
    if len(value) > MAX_VALUE:
        raise _invalid("value")
    c.metadata[key] = value
    if len(c.metadata) > MAX_FIELDS:
        raise _invalid("fields")


def template_data(value: str) -> dict[str, Any]:
    """``X-Helo-Template-Data``: a JSON object, else ``templating_error``."""
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        raise TemplatingError() from None
    if not isinstance(data, dict):
        raise TemplatingError()
    return data


def check_subject(subject: str) -> None:
    if len(subject) > MAX_SUBJECT:
        raise _invalid("subject")


def check_custom(fields: Iterable[tuple[str, bytes]]) -> None:
    """Custom headers (name + value as sent, unfolded, without CRLF) at most 5,000 chars."""
    total = 0
    for low, raw in fields:
        if low in STANDARD or is_control(low):
            continue
        total += len(raw.replace(b"\r\n", b"").decode("utf-8", "replace"))
    if total > MAX_CUSTOM:
        raise _invalid("custom")
