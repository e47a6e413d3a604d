"""Turn a results file into docs/benchmarks.md and its charts.

    python -m bench.report bench/results/latest.json     # rewrite the docs from saved results
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import charts

MODES = ("per_connection", "persistent")
RELAYS = ("postfix", "helo-smtp")
TARGETS = (  # (label, rule text, ok?)
    "durable accept >= 1.5x Postfix", "end-to-end >= 1.2x Postfix",
    "accept >= 80% of the bare aiosmtpd ceiling", "transactional p99 < 1 s during the drain",
    "RSS < 250 MB with 100k queued", "claim time at 1M within 2x of 1k")


def spread(values: list[float]) -> dict[str, float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(s: dict[str, float], digits: int = 0) -> str:
    if not s:
        return "n/a"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def runs_of(result: dict[str, Any], relay: str, mode: str, key: str,
            section: str = "throughput") -> list[float]:
    rounds = (result.get(section) or {}).get("rounds") or []
    return [run[key] for rnd in rounds for run in rnd["runs"]
            if run["relay"] == relay and run["mode"] == mode]


def ceiling(result: dict[str, Any], name: str) -> list[float]:
    return [rnd["ceilings"][name]["rate"] for rnd in result["throughput"]["rounds"]]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; ``inf`` stands for a probe that never arrived."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    rank = max(0, min(len(vals) - 1, math.ceil(q / 100 * len(vals)) - 1))
    return vals[rank]


def probe_stats(iso: dict[str, Any], phase: str) -> dict[str, Any]:
    t0 = iso["t0"]
    lo, hi = ((0.0, iso["fill_end"] - t0) if phase == "fill"
              else (iso["drain_start"] - t0, iso["drain_end"] - t0))
    lat = [p["latency"] if p["latency"] is not None else float("inf")
           for p in iso["probes"] if lo <= p["t"] < hi]
    lost = sum(1 for v in lat if v == float("inf"))
    return {"n": len(lat), "undelivered": lost, "p50": percentile(lat, 50),
            "p99": percentile(lat, 99), "max": max(lat, default=float("nan"))}


def secs(v: float) -> str:
    if v != v:  # nan
        return "n/a"
    if v == float("inf"):
        return "not delivered"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


def ratio(a: list[float], b: list[float]) -> float | None:
    sa, sb = spread(a), spread(b)
    if not sa or not sb or not sb["median"]:
        return None
    return sa["median"] / sb["median"]


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    for label, key, need in ((TARGETS[0], "accept_rate", 1.5), (TARGETS[1], "e2e_rate", 1.2)):
        for mode in MODES:
            r = ratio(runs_of(result, "helo-smtp", mode, key),
                      runs_of(result, "postfix", mode, key))
            out.append((f"{label} ({mode.replace('_', ' ')})",
                        f"{r:.2f}x" if r is not None else "n/a",
                        None if r is None else r >= need))
    for mode in MODES:
        r = ratio(runs_of(result, "helo-smtp", mode, "accept_rate"),
                  ceiling(result, f"aiosmtpd_{mode}"))
        out.append((f"{TARGETS[2]} ({mode.replace('_', ' ')})",
                    f"{100 * r:.0f}%" if r is not None else "n/a",
                    None if r is None else r >= 0.8))
    out += _iso_targets(result)
    out += _claim_target(result)
    return out


def _iso_targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    iso = (result.get("isolation") or {}).get("helo-smtp")
    out: list[tuple[str, str, bool | None]] = [(TARGETS[3], "not run", None)]
    if iso:
        p99 = probe_stats(iso, "drain")["p99"]
        out = [(TARGETS[3], secs(p99), p99 < 1.0)]
    mem = result.get("helo_memory")
    if mem:
        # the larger of the bulk-filled run and the isolation run's fill through SMTP
        peaks = [mem["peak_rss"]] + ([iso["memory"]["peak_rss"]] if iso else [])
        rss = max(peaks) / 1e6
        return [*out, (TARGETS[4].replace("100k", f"{mem['messages']:,}"), f"{rss:.0f} MB",
                       rss < 250)]
    return [*out, (TARGETS[4], "not run", None)]


def _claim_target(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    qs = result.get("queue_scaling") or {}
    if "1000" not in qs or "1000000" not in qs:
        return [(TARGETS[5], "not run", None)]
    r = qs["1000000"]["median_ms"] / qs["1000"]["median_ms"]
    return [(TARGETS[5], f"{r:.2f}x", r <= 2.0)]


def write(result: dict[str, Any], docs: Path) -> list[Path]:
    from bench import report_md, webhooks

    docs.mkdir(parents=True, exist_ok=True)
    pngs = charts.draw(result, docs)
    md = docs / "benchmarks.md"
    keep = webhooks.kept(md)  # the section bench/webhooks.py writes
    md.write_text(report_md.render(result, [p.name for p in pngs]) + ("\n" + keep if keep
                                                                       else ""))
    return [md, *pngs]


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.json")
    result = json.loads(path.read_text())
    for p in write(result, Path(__file__).resolve().parent.parent / "docs"):
        print(time.strftime("%H:%M:%S"), "wrote", p)


if __name__ == "__main__":
    main()
