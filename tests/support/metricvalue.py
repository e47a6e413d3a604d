"""Read one Prometheus sample from one instrument (not the whole registry, whose other
collectors may belong to relays other tests have stopped)."""

from __future__ import annotations

from typing import Any


def sample(metric: Any, suffix: str = "", **labels: str) -> float:
    """The value of ``metric``'s sample named ``<name><suffix>`` with exactly ``labels``
    (0.0 when it was never touched). ``suffix``: "_total" for counters, "_count" etc."""
    for family in metric.collect():
        for s in family.samples:
            if s.name == family.name + suffix and s.labels == labels:
                return float(s.value)
    return 0.0
