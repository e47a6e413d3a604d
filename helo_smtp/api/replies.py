"""A ``HeloError`` (the catalog of ``errors.py``) as an HTTP reply (SPEC §11).

The ``errorCode`` is the catalog name, the same one the SMTP door writes as the first word of
its reply text; the ``errorMessage`` is the catalog text (never client text, never an
exception). Our own faults (4xx in SMTP) are HTTP 503 ``delayed`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from helo_smtp.errors import CATALOG, HeloError, Reply

RETRY_AFTER = 30  # seconds; a full queue or a busy store clears in about that
_STATUS = {
    "channel_not_found": 404,
    "not_found": 404,
    "idempotency_conflict": 409,
    "message_too_large": 413,
    "unauthorized": 401,
    "auth_locked": 429,
    # The request itself is malformed: fields, addresses, limits of §4.
    "validation_error": 400,
    "bad_sender": 400,
    "bad_recipient": 400,
    "smtputf8_required": 400,
    "nul_characters": 400,
}


def http_status(reply: Reply) -> int:
    if reply.name in _STATUS:
        return _STATUS[reply.name]
    return 503 if reply.transient else 422


def error_body(reply: Reply, detail: str = "") -> dict[str, Any]:
    text = reply.line(detail).split(" ", 2)[2]
    if text.startswith(f"{reply.name}: "):
        text = text[len(reply.name) + 2:]
    status = "delayed" if reply.transient and reply.name not in _STATUS else "failed"
    return {"status": status, "errorCode": reply.name, "errorMessage": text}


def from_error(exc: HeloError) -> tuple[int, dict[str, Any]]:
    return http_status(exc.reply), error_body(exc.reply, exc.detail)


def fault(name: str = "local_error") -> tuple[int, dict[str, Any]]:
    reply = CATALOG[name]
    return http_status(reply), error_body(reply)


def respond(status: int, body: dict[str, Any]) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER)} if status in (503, 429) else None
    return web.json_response(body, status=status, headers=headers)
