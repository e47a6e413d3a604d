"""Facts about the machine a run happened on, and CPU accounting per phase from /proc/stat.

Steal (time the hypervisor gave to someone else) and busy time outside the processes the run
started tell whether a number can be trusted: both go into the report for every phase.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def facts() -> dict[str, object]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"cores": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "postfix": _postfix_version(), "openssl": _openssl_version()}


def _postfix_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "postfix"],
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout.strip()


def _openssl_version() -> str:
    import ssl

    return ssl.OPENSSL_VERSION


@dataclass(frozen=True)
class CPUSample:
    at: float
    total: int   # jiffies, all CPUs, all states
    idle: int    # idle + iowait
    steal: int


def sample() -> CPUSample:
    """The aggregate ``cpu`` line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return CPUSample(time.time(), total, idle + iowait, steal)


def usage(a: CPUSample, b: CPUSample, own_cpu_seconds: float | None = None
          ) -> dict[str, float]:
    """Between two samples: steal %, busy %, and (given our own CPU seconds) the busy share
    of processes this run did not start, all as % of the whole machine."""
    total = max(b.total - a.total, 1)
    hz = os.sysconf("SC_CLK_TCK")
    busy = total - (b.idle - a.idle) - (b.steal - a.steal)
    out = {"steal_pct": 100.0 * (b.steal - a.steal) / total, "busy_pct": 100.0 * busy / total}
    if own_cpu_seconds is not None:
        out["foreign_pct"] = max(0.0, 100.0 * (busy - own_cpu_seconds * hz) / total)
    return out
