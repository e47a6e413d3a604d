"""The retry ladder: exponential from retry_base, capped, jittered, bounded by the lifetime."""

from __future__ import annotations

import random

import pytest

from helo_smtp.config import DeliveryConfig
from helo_smtp.models import RecipientState
from helo_smtp.outbound.retry import JITTER, after_deferral, backoff

BASE, CAP = 300.0, 14_400.0


@pytest.mark.parametrize(("retry", "nominal"), [
    (1, 300.0), (2, 600.0), (3, 1200.0), (4, 2400.0), (5, 4800.0), (6, 9600.0),
    (7, CAP), (8, CAP), (40, CAP), (500, CAP),
])
def test_ladder_doubles_from_base_to_cap(retry, nominal):
    assert backoff(retry, BASE, CAP, rand=lambda: 0.0) == nominal
    low = backoff(retry, BASE, CAP, rand=lambda: 0.999999)
    assert nominal * (1 - JITTER) < low < nominal


def test_jitter_spreads_a_batch_and_never_exceeds_the_cap():
    rng = random.Random(7)
    delays = [backoff(3, BASE, CAP, rand=rng.random) for _ in range(200)]
    assert all(1200 * (1 - JITTER) < d <= 1200 for d in delays)
    assert len({round(d, 3) for d in delays}) > 150  # not all at the same second
    capped = [backoff(30, BASE, CAP, rand=rng.random) for _ in range(200)]
    assert max(capped) <= CAP and min(capped) > CAP * (1 - JITTER)


def test_deferral_is_due_on_the_ladder():
    cfg = DeliveryConfig(retry_base=BASE, retry_cap=CAP)
    state, due = after_deferral(0, expires_at=10_000_000.0, now=1000.0, cfg=cfg,
                                rand=lambda: 0.0)
    assert (state, due) == (RecipientState.DEFERRED, 1300.0)
    state, due = after_deferral(2, expires_at=10_000_000.0, now=1000.0, cfg=cfg,
                                rand=lambda: 0.0)
    assert (state, due) == (RecipientState.DEFERRED, 1000.0 + 1200.0)


def test_a_deferral_whose_next_try_is_past_the_lifetime_expires_now():
    cfg = DeliveryConfig(retry_base=BASE, retry_cap=CAP)
    assert after_deferral(0, expires_at=1299.0, now=1000.0, cfg=cfg,
                          rand=lambda: 0.0) == (RecipientState.EXPIRED, None)
    assert after_deferral(0, expires_at=1300.0, now=1000.0, cfg=cfg,
                          rand=lambda: 0.0) == (RecipientState.DEFERRED, 1300.0)
