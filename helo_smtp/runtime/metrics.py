"""Prometheus metrics (prometheus-client), served at ``/metrics`` by the HTTP side.

Module-level instruments on the default registry. Under ``helo-smtp serve`` the delivery
workers run in a child process (``deliverer.py``): both processes then record into
prometheus-client's multiprocess directory and ``/metrics`` sums them (``scrape_registry``).
Queue depth and oldest age are read from the store when scraped (``QueueCollector``), so they
are never stale.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

MESSAGES_ACCEPTED = Counter("helo_messages_accepted", "Messages accepted (250) by mail type",
                            ["mail_type"])
MESSAGES_REJECTED = Counter("helo_messages_rejected",
                            "SMTP transactions rejected, by reply code and catalog name",
                            ["code", "reason"])
RECIPIENTS_FINAL = Counter("helo_recipients_final",
                           "Recipients reaching a final state, by state and bounce category",
                           ["mail_type", "state", "category"])
DELIVERY_ATTEMPTS = Counter("helo_delivery_attempts", "Delivery attempts by outcome",
                            ["mail_type", "outcome"])
DELIVERY_LATENCY = Histogram(
    "helo_delivery_latency_seconds", "Accept-to-delivered time per recipient", ["mail_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400))
CONNECTIONS_ACTIVE = Gauge("helo_connections_active", "Open SMTP connections",
                           ["direction"], multiprocess_mode="livesum")
AUTH_FAILURES = Counter("helo_auth_failures", "Failed SMTP AUTH attempts", ["reason"])
DNS_FAILURES = Counter("helo_dns_failures", "DNS lookups that failed", ["kind"])
ENGAGEMENT = Counter("helo_engagement",
                     "Unique opens, clicks and unsubscribes recorded (first per recipient)",
                     ["kind"])
MESSAGE_LOADS = Counter("helo_message_loads",
                        "Message bodies loaded for delivery: from memory (just committed) "
                        "or read back from the store", ["source"])
PACING_SLOWDOWNS = Counter("helo_pacing_slowdowns",
                           "Adaptive slowdowns started after rate-limit replies", ["pool"])
DELIVERY_PROCESS_RESTARTS = Counter(
    "helo_delivery_process_restarts",
    "Delivery processes restarted by the main process, by reason (exited, unresponsive)",
    ["reason"])


class QueueCollector(Collector):
    """Queue depth and oldest pending age per mail type, read from the store at scrape time."""

    def __init__(self, stats: Any) -> None:
        self._stats = stats  # callable: () -> {mail_type: (depth, oldest_created_at | None)}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("helo_queue_depth", "Pending recipients", labels=["mail_type"])
        age = GaugeMetricFamily("helo_queue_oldest_age_seconds",
                                "Age of the oldest pending recipient", labels=["mail_type"])
        now = time.time()
        try:
            stats = self._stats()
        except Exception as exc:  # noqa: BLE001 - a store fault must not blank every metric
            logging.getLogger("helo_smtp.metrics").warning("event=queue_stats_failed error=%s",
                                                           exc)
            stats = {}
        for mail_type, (count, oldest) in stats.items():
            depth.add_metric([mail_type], count)
            age.add_metric([mail_type], now - oldest if oldest else 0.0)
        yield depth
        yield age


_collector: QueueCollector | None = None


def register_queue(stats: Any) -> None:
    """Point the queue gauges at a store (replacing an earlier one)."""
    global _collector
    if _collector is not None:
        REGISTRY.unregister(_collector)
    _collector = QueueCollector(stats)
    REGISTRY.register(_collector)


def unregister_queue(stats: Any) -> None:
    """Forget the queue gauges' store if it is still ``stats`` (the relay is stopping)."""
    global _collector
    if _collector is not None and _collector._stats == stats:
        REGISTRY.unregister(_collector)
        _collector = None


def scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` renders: the default registry in one process; with the delivery
    process, every process's values summed from the shared directory, plus this process's
    resource use and the queue gauges."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    ProcessCollector(registry=registry)
    if _collector is not None:
        registry.register(_collector)
    return registry
