"""The retention section of docs/benchmarks.md, from ``bench/results/retention.json``
(``python -m bench.retention --write``). ``report_md.render`` includes it when the file
exists; ``splice`` puts a fresh section into the current document without rerunning the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "retention.json"
TITLE = "## Accept latency during a retention purge"


def section(r: dict[str, Any] | None = None) -> str:
    if r is None:
        if not RESULTS.exists():
            return ""
        r = json.loads(RESULTS.read_text())
    idle, after = r["idle"], r["idle_after"]
    on, off = r["purging_windows"], r["paused_windows"]
    ratio = on["p99_ms"] / off["p99_ms"] if off["p99_ms"] else float("nan")
    rows = [
        TITLE, "",
        f"`python -m bench.retention --messages {r['messages']}` (bench/retention.py): a real"
        f" `helo-smtp serve` on a SQLite file holding {r['messages']:,} finished messages from"
        f" 100 days ago ({r['rows']:,} rows: message, recipient, attempt, two events each),"
        f" a paced load of {r['rate']:g} messages/s over {r['sessions']} persistent"
        " authenticated sessions, measured from MAIL to the 250 after DATA. A purge process"
        " (the store's `Retention.run` with the default `[retention]` batches, in its own"
        " process as the background pass is in the delivery child) drops every body and then"
        f" every row ({r['purge_seconds']:.0f} s); it is paused and resumed every"
        f" {r['window']:g} s, between two batches, and each submission is booked to the window"
        " it started in, so purging and paused windows interleave and the shared machine's"
        " drift falls on both.", "",
        "| phase | messages | p50 | p99 | max |", "|---|---|---|---|---|",
        *(f"| {name} | {x['count']} | {x['p50_ms']:.0f} ms | {x['p99_ms']:.0f} ms |"
          f" {x['max_ms']:.0f} ms |"
          for name, x in (("idle before", idle), ("purge running", on),
                          ("purge paused", off), ("idle after", after))),
        "",
        f"p99 while purging / p99 in the paused windows between: **{ratio:.2f}x** (target:"
        f" within 1.2x). Purged: {r['purge']['bodies']:,} bodies"
        f" ({r['purge']['body_bytes'] / 1e6:.0f} MB) and {r['purge']['messages']:,} messages"
        f" with {sum(r['purge']['rows'].values()):,} rows;"
        f" {r['purge']['vacuumed_pages']:,} pages given back to the file system. "
        + r.get("note", ""), "",
    ]
    return "\n".join(rows)


def splice(doc: Path, text: str) -> None:
    """Replace the section in ``doc`` (or put it before "## Every round")."""
    md = doc.read_text()
    if TITLE in md:
        head, _, rest = md.partition(TITLE)
        nxt = rest.find("\n## ")
        md = head + text + (rest[nxt + 1:] if nxt >= 0 else "")
    else:
        head, sep, rest = md.partition("## Every round")
        md = head + text + "\n" + sep + rest
    doc.write_text(md)
