"""The report's charts (matplotlib, Agg backend, PNG into docs/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"postfix": "#4c72b0", "helo-smtp": "#dd8452", "ceiling": "#8c8c8c",
          "source": "#55a868"}


def draw(result: dict[str, Any], docs: Path) -> list[Path]:
    """The PNGs written ([] without matplotlib: bench/run.sh installs it, the tests do not)."""
    try:
        import matplotlib
    except ImportError:
        return []

    matplotlib.use("Agg")
    out = [_throughput(result, docs / "benchmarks-throughput.png")]
    if result.get("isolation"):
        out.append(_isolation(result, docs / "benchmarks-isolation.png"))
    return out


def _series(result: dict[str, Any]) -> list[tuple[str, str, str, list[float]]]:
    """(label, color, mode, per-round values) for every bar."""
    from bench.report import MODES, ceiling, runs_of

    bars = []
    for mode in MODES:
        for relay in ("postfix", "helo-smtp"):
            bars.append((f"{relay}\naccept", COLORS[relay], mode,
                         runs_of(result, relay, mode, "accept_rate")))
            bars.append((f"{relay}\nend-to-end", COLORS[relay], mode,
                         runs_of(result, relay, mode, "e2e_rate")))
        bars.append(("aiosmtpd\nceiling", COLORS["ceiling"], mode,
                     ceiling(result, f"aiosmtpd_{mode}")))
        bars.append(("smtp-source\n-> smtp-sink", COLORS["source"], mode,
                     ceiling(result, f"smtp_source_{mode}")))
    return bars


def _throughput(result: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    from bench.report import MODES

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    bars = _series(result)
    for ax, mode in zip(axes, MODES, strict=True):
        mine = [b for b in bars if b[2] == mode]
        for i, (label, color, _, vals) in enumerate(mine):
            vals = [v for v in vals if v]
            if not vals:
                continue
            med = sorted(vals)[len(vals) // 2]
            hatch = "//" if "end-to-end" in label else None
            ax.bar(i, med, color=color, alpha=0.8, hatch=hatch, edgecolor="white")
            ax.scatter([i] * len(vals), vals, color="black", s=10, zorder=3)
            ax.annotate(f"{med:.0f}", (i, med), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(mine)), [b[0] for b in mine], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"4 KiB messages, 20 clients, {mode.replace('_', ' ')}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("messages / s (log scale; bar = median, dots = rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _isolation(result: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(2, 1, figsize=(12, 8), sharex=False)
    for relay, iso in result["isolation"].items():
        _latency_line(lat, relay, iso)
        t0 = iso["t0"]
        mem.plot([t - t0 for t, _ in iso["rss_series"]],
                 [r / 2**20 for _, r in iso["rss_series"]], color=COLORS[relay], label=relay)
        mem.axvline(iso["fill_end"] - t0, color=COLORS[relay], ls=":", lw=1)
    lat.axhline(1.0, color="red", lw=0.8, ls="--", label="1 s target")
    lat.set_yscale("log")
    lat.set_ylabel("submit -> delivered (s, log)")
    lat.set_xlabel("seconds since the drain started (probes before 0 ran during the fill)")
    lat.set_title("Transactional probes (1/s) while the broadcast backlog fills and drains")
    lat.legend(fontsize=8)
    lat.grid(alpha=0.3)
    mem.set_ylabel("MiB (helo-smtp: sum of RSS; Postfix: sum of PSS)")
    mem.set_xlabel("seconds since the fill started (dotted: fill done)")
    mem.set_title("Relay memory while the backlog is accepted (destination answers 451)")
    mem.legend(fontsize=8)
    mem.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency_line(ax: Any, relay: str, iso: dict[str, Any]) -> None:
    shift = iso["drain_start"] - iso["t0"]
    ok = [(p["t"] - shift, p["latency"]) for p in iso["probes"] if p["latency"] is not None]
    lost = [p["t"] - shift for p in iso["probes"] if p["latency"] is None]
    ax.plot([t for t, _ in ok], [v for _, v in ok], ".-", ms=3, lw=0.6, color=COLORS[relay],
            label=f"{relay} ({len(ok)} delivered)")
    if lost:
        top = max([v for _, v in ok] + [1.0]) * 2
        ax.scatter(lost, [top] * len(lost), marker="x", color=COLORS[relay],
                   label=f"{relay}: {len(lost)} not delivered by the end")
