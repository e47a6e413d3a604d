"""What one webhook POST's result means, in prose and in ``verdict`` / ``retry_at``.

- A 2xx reply delivers the event.
- A timeout, a connection failure, a 5xx, ``408 Request Timeout`` and ``429 Too Many Requests``
  are the receiver's passing trouble: retried with a jittered backoff that starts at
  ``[webhooks] first_retry_seconds`` (60) and doubles (60 s, 2 min, 4 min, ... about 11
  attempts), until the delivery has been pending for ``retry_for_seconds`` (24 h); then it is
  failed. The last retry is moved up to the end of that window, so none is skipped.
- ``410 Gone`` says the endpoint no longer exists: the delivery fails and the endpoint is
  disabled (as Stripe and Postmark do).
- Any other reply (3xx, since redirects are not followed, and 4xx) will not change by asking
  again: failed at once, not retried.
- A target refused by the SSRF guard fails at once.
- An endpoint whose deliveries have all failed for ``retry_for_seconds`` is disabled; one
  success ends the streak (``store.webhooks.endpoint_health``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAIL = "fail"
    GONE = "gone"  # fail and disable the endpoint


def verdict(code: int | None) -> Verdict:
    """``code`` None: no HTTP reply (timeout, connection failure)."""
    if code is None or code >= 500 or code in (408, 429):
        return Verdict.RETRY
    if 200 <= code < 300:
        return Verdict.DELIVERED
    return Verdict.GONE if code == 410 else Verdict.FAIL


def retry_at(attempts: int, queued_at: float, now: float, first: float, window: float,
             rng: Callable[[], float] = random.random) -> float | None:
    """When to try again after the ``attempts``-th failed attempt (1 = the first), or None
    when the window is over. The delay is ``first * 2**(attempts-1)`` times a factor drawn
    from [0.75, 1.25), so receivers recovering from an outage are not hit in lockstep."""
    deadline = queued_at + window
    if now >= deadline:
        return None
    delay = first * (2 ** min(attempts - 1, 30)) * (0.75 + 0.5 * rng())
    return min(now + delay, deadline)
