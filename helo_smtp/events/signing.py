"""Webhook signatures: ``X-Helo-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>``, one ``v1=`` per active secret (during a rotation the receiver may hold the
old or the new one). Timestamped like Stripe's scheme so a receiver can refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "X-Helo-Signature"
EVENT_ID_HEADER = "X-Helo-Event-Id"
TOLERANCE = 300  # seconds a receiver should accept between t= and its own clock


def digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()


def sign(secrets: Sequence[str], body: bytes, t: int | None = None) -> str:
    """The header value for ``body`` under every active secret."""
    t = int(time.time()) if t is None else t
    return ",".join([f"t={t}", *(f"v1={digest(s, t, body)}" for s in secrets)])


def verify(secret: str, header: str, body: bytes, tolerance: int = TOLERANCE,
           now: float | None = None) -> bool:
    """What a receiver does: some ``v1`` matches and ``t`` is recent."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    ts = [v for k, v in parts if k == "t"]
    if len(ts) != 1 or not ts[0].isdigit():
        return False
    t = int(ts[0])
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    want = digest(secret, t, body)
    return any(hmac.compare_digest(want, v) for k, v in parts if k == "v1")
