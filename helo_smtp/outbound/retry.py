"""The retry ladder: jittered exponential backoff inside a lifetime.

Retry ``n`` (1 = the first retry) waits ``retry_base * 2**(n-1)``, capped at ``retry_cap``
(defaults: 5 min doubling to 4 h, as Postfix's minimal/maximal backoff). Each delay is drawn
from ``(0.8 * d, d]`` so recipients that failed together do not all come back in the same
second. A deferral whose next try would fall after the recipient's ``expires_at`` (created +
``transactional_lifetime`` or ``broadcast_lifetime``) is not deferred: it is expired now,
since no further try would be allowed anyway.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from helo_smtp.config import DeliveryConfig
from helo_smtp.models import RecipientState

JITTER = 0.2  # a delay is drawn from ((1 - JITTER) * d, d]


def backoff(retry: int, base: float, cap: float,
            rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1-based)."""
    exponent = max(0, retry - 1)
    delay = cap if exponent >= 64 else min(cap, base * (2 ** exponent))
    return delay * (1.0 - JITTER * rand())


def after_deferral(attempts_before: int, expires_at: float, now: float, cfg: DeliveryConfig,
                   rand: Callable[[], float] = random.random
                   ) -> tuple[RecipientState, float | None]:
    """(DEFERRED, next_attempt_at) or (EXPIRED, None) for a recipient that just failed
    transiently; ``attempts_before`` counts the attempts recorded before this one."""
    due = now + backoff(attempts_before + 1, cfg.retry_base, cfg.retry_cap, rand)
    if due > expires_at:
        return RecipientState.EXPIRED, None
    return RecipientState.DEFERRED, due
