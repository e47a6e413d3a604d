"""The paced-drain section of docs/benchmarks.md, rendered from ``bench/results/drain.json``
(runs of ``python -m bench.drain``, by label; see that module). Empty when the file is absent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "drain.json"

INTRO = """## Paced drain: delivery CPU, WAL growth and transactional latency (issue #23)

`python -m bench.drain` (bench/drain.py) starts helo-smtp on a store bulk-filled with
{messages:,} broadcast messages (4 KiB, one recipient each, all at one destination domain whose
`smtp-sink` accepts everything) and, once the delivery process is up plus a 5 s warm-up,
measures {seconds:.0f} s: CPU of the delivery process and of the listener process, the SQLite
WAL file (size at the start and end of the window, peak sampled every 0.2 s), broadcast
messages received, and transactional probes (one every 0.25 s on the submission port)
submit-to-delivered. **Pacing on** is the broadcast pool's defaults (50 msg/s, 5 msg/s per
domain, 50 connections, 5 per domain): one destination domain drains at 5 msg/s. **Pacing off**
is the main benchmark's unpaced pool (bench/env.py). Each row is one run, run one after the
other on this 2-core machine **while other engineers' test suites and benchmarks ran on it**
(load average {load}): read the CPU and WAL columns as orders of magnitude, and the latency
columns as noisy (a p99 of {probes} probes is their second-slowest).

"""
HEAD = ["run", "code", "pacing", "delivery CPU (share of a core)", "listener CPU", "WAL growth",
        "WAL peak", "broadcast sent", "probes", "p50", "p99", "max"]

def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _row(label: str, r: dict[str, Any]) -> str:
    code = r.get("code", label)
    p = r["probes"]
    return (f"| {label} | {code} | {r['pacing']} | {r['cpu_share']['delivery'] * 100:.0f} %"
            f" ({r['cpu_seconds']['delivery']:.1f} s) | {r['cpu_share']['listener'] * 100:.0f} %"
            f" | {_mib(r['wal_bytes']['growth'])} | {_mib(r['wal_bytes']['peak'])}"
            f" | {r['bc_delivered']:,} | {p['delivered']}/{p['sent']} | {p['p50_ms']:.0f} ms"
            f" | {p['p99_ms']:.0f} ms | {p['max_ms']:.0f} ms |")


def section(path: Path = RESULTS) -> str:
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    runs: dict[str, dict[str, Any]] = data["runs"]
    if not runs:
        return ""
    first = next(iter(runs.values()))
    loads = [r["load_before"][0] for r in runs.values()]
    out = INTRO.format(messages=first["messages"], seconds=first["seconds"],
                       load=f"{min(loads):.1f}-{max(loads):.1f}",
                       probes=first["probes"]["sent"])
    out += "| " + " | ".join(HEAD) + " |\n" + "|---" * len(HEAD) + "|\n"
    out += "\n".join(_row(label, r) for label, r in runs.items()) + "\n"
    notes = data.get("notes", [])
    if notes:
        out += "\n" + "\n".join(f"* {n}" for n in notes) + "\n"
    commands = sorted({r.get("command", "") for r in runs.values()} - {""})
    if commands:
        out += "\nCommands (from each checkout: main's in a `git archive` copy):\n\n```sh\n"
        out += "\n".join(commands) + "\n```\n"
    return out


__all__ = ["RESULTS", "section"]
