"""The public shape of an event (SPEC §12), as ``events list --json`` prints it and webhooks
POST it. Field names follow Postmark's camelCase; ``at`` is RFC 3339 UTC with milliseconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from helo_smtp.store.events import PUBLIC

#: event data key -> ``details`` key
_DETAILS = {"code": "code", "status": "enhancedStatus", "text": "text", "host": "remoteHost",
            "category": "bounceCategory", "url": "url", "user_agent": "userAgent",
            "source": "source", "feedback_type": "feedbackType"}


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _json(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def public_event(row: dict[str, Any]) -> dict[str, Any]:
    """One event from a row of ``store.events.FEED_COLUMNS``."""
    data = _json(row["data"], {})
    details = {out: data[k] for k, out in _DETAILS.items() if data.get(k) is not None}
    return {
        "id": row["uid"],
        "type": PUBLIC.get(row["type"], "test"),
        "at": rfc3339(row["at"]),
        "messageId": row["message_id"],
        "channelId": row["channel_id"],
        "broadcastId": row["broadcast_id"],
        "recipient": row["recipient"],
        "tags": _json(row.get("tags"), data.get("tags", [])),
        "metadata": _json(row.get("metadata"), data.get("metadata", {})),
        "details": details,
    }


def body(event: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
