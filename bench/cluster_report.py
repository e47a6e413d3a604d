"""The "Several nodes" section of docs/benchmarks.md, from ``bench/results/cluster.json``
(written by ``python -m bench.cluster``; the section is left out when the file is missing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"

HEAD = ("| nodes | rate/s | peak connections | delivered | duplicates | killed node's"
        " connections | kill -9 to survivors on 4 connections | kill -9 to 90 % of the rate"
        " cap | survivors' rate after |\n|---|---|---|---|---|---|---|---|---|")


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [HEAD]
    for r in rows:
        killed = r["nodes"] > 1
        lines.append(
            f"| {r['nodes']} | {r['rate']:.1f} | {r['peak_connections']} |"
            f" {r['delivered']}/{r['messages']} | {r['duplicates']} |"
            f" {_num(r['dead_had'] if killed else None, '{}')} |"
            f" {_num(r['all_slots_s'], '{:.1f} s')} | {_num(r['recovery_s'], '{:.1f} s')} |"
            f" {_num(r['rate_after'], '{:.1f}')} |")
    return "\n".join(lines)


def section(path: Path = RESULTS) -> str:
    if not path.exists():
        return ""
    run = json.loads(path.read_text())
    p = run["params"]
    return "\n".join([
        "## Several nodes on one PostgreSQL: caps and recovery", "",
        f"`python -m bench.cluster` ({p['messages']} one-recipient messages per scenario, one"
        f" destination at `per_domain_rate = {p['rate']:g}`, `per_domain_connections ="
        f" {p['connections']}`, `lease_seconds = {p['lease']:g}`; the destination answers DATA"
        f" after {p['data_delay']} s, so the rate cap needs all {p['connections']} connections;"
        " the node with the most connections open SIGKILLed after 40 % of the backlog)."
        " Measured at the destination; a duplicate is a message the killed node had sent"
        " but not yet recorded (RFC 5321 §6.1). The"
        f" machine was busy with other work (2 cores, load average {p['load']:.0f} at the end),"
        " so rates below the cap are CPU starvation, not pacing. See docs/scaling.md.", "",
        table(run["rows"]), ""])
