"""docs/benchmarks.md, second half: isolation, memory, queue scaling, profile, commands."""

from __future__ import annotations

import time
from typing import Any

from bench.report import MODES, fmt, probe_stats, runs_of, secs, spread


def isolation(result: dict[str, Any], pngs: list[str]) -> str:
    iso = result.get("isolation")
    if not iso:
        return ""
    p = result["params"]
    rows = ["## Isolation: transactional latency while a broadcast backlog drains", "",
            f"{p['iso_messages']:,} broadcast messages (to `bc.bench.test`) are submitted over 20 "
            "persistent sessions while that destination answers every RCPT with `451`; once "
            "each has been tried and deferred, the destination becomes an `smtp-sink "
            f"-w {p['slow_delay']:g}` (accepts, {p['slow_delay']:g} s per message), every "
            "deferred message is made due at once (`postqueue -f` for Postfix; for helo-smtp an "
            "UPDATE of `next_attempt_at` to now, as `helo-smtp queue retry` makes), and for "
            f"{p['drain_seconds']:g} s one transactional message per second goes to "
            "`tx.bench.test` (a fast sink). Latency: MAIL FROM sent -> message arrived at the "
            "sink. A probe that had not arrived when the run ended counts as infinitely late.", "",
            *_iso_scale_note(p["iso_messages"]),
            "| relay | phase | probes | not delivered | p50 | p99 | max |",
            "|---|---|---|---|---|---|---|"]
    for relay, data in iso.items():
        for phase, label in (("fill", "during the fill"), ("drain", "during the drain")):
            s = probe_stats(data, phase)
            rows.append(f"| {relay} | {label} | {s['n']} | {s['undelivered']} | {secs(s['p50'])}"
                        f" | {secs(s['p99'])} | {secs(s['max'])} |")
    rows += ["", "| relay | fill rate (msg/s) | fill errors | broadcast delivered during the "
             "drain |", "|---|---|---|---|"]
    for relay, data in iso.items():
        f = data["fill"]
        rows.append(f"| {relay} | {f['rate']:.0f} | {f['errors'] or 'none'} |"
                    f" {data['bc_delivered_in_drain']} |")
    if "benchmarks-isolation.png" in pngs:
        rows += ["", "![isolation latency and memory](benchmarks-isolation.png)"]
    return "\n".join(rows) + "\n"


def _iso_scale_note(n: int) -> list[str]:
    if n >= 100_000:
        return []
    return [f"*Why {n:,} and not 100,000:* the backlog goes in through SMTP (STARTTLS + AUTH) "
            "and helo-smtp accepts it at the rate in the fill table below; 100,000 would take "
            "about half an hour per relay on this machine, longer than the whole run may. "
            "The memory target is measured at 100,000 apart (next section). Note that "
            f"{n:,} messages fit in Postfix's active queue (`qmgr_message_active_limit`, "
            "20,000), so this run does not show Postfix with a backlog waiting in its "
            "incoming queue.", ""]


def memory(result: dict[str, Any]) -> str:
    iso = result.get("isolation") or {}
    rows = ["## Memory with the backlog queued and undeliverable", ""]
    mem = result.get("helo_memory")
    if mem:
        rows += [
            f"**helo-smtp, {mem['messages']:,} messages.** A store bulk-filled with "
            f"{mem['messages']:,} broadcast messages of 4 KiB (`bench/queuefill.py "
            "fill_backlog`, {:.0f} s), then `helo-smtp serve` started on it with the "
            "destination answering `451` to every RCPT, RSS sampled every 0.5 s for "
            "{:.0f} s while it works through them.".format(mem["fill_seconds"], mem["seconds"]),
            "", "| peak RSS | high-water mark (VmHWM) | RSS at the end | PSS at the end |"
            " tried in that time | still queued |", "|---|---|---|---|---|---|",
            f"| {mem['peak_rss'] / 2**20:.0f} MiB | {mem['peak_rss_hwm'] / 2**20:.0f} MiB |"
            f" {mem['rss_after'] / 2**20:.0f} MiB | {mem['pss_after'] / 2**20:.0f} MiB |"
            f" {mem['attempted']:,} | {mem['queued']:,} |", ""]
    if not iso:
        return "\n".join(rows) + "\n" if mem else ""
    n = result["params"]["iso_messages"]
    rows += [f"**Both relays, {n:,} messages through SMTP** (the isolation run's fill).",
            "",
            f"Sampled every 0.5 s from the start of the fill until all {n:,} messages had been "
            "tried once and deferred (the destination answering 451). helo-smtp is two processes "
            "(listeners, delivery): the sum of their RSS (and of the kernel's high-water marks, "
            "VmHWM; shared pages counted twice). Postfix is a process per job: "
            "the sum of their proportional set sizes (shared pages split among the sharers).", "",
            "| relay | peak | at the end | high-water mark | still queued |",
            "|---|---|---|---|---|"]
    for relay, data in iso.items():
        m = data["memory"]
        hwm = f"{m['peak_rss_hwm'] / 2**20:.0f} MiB" if m.get("peak_rss_hwm") else "n/a"
        rows.append(f"| {relay} | {m['peak_rss'] / 2**20:.0f} MiB | {m['rss_after'] / 2**20:.0f}"
                    f" MiB | {hwm} | {m['queued']:,} |")
    return "\n".join(rows) + "\n"


def queue(result: dict[str, Any]) -> str:
    qs = result.get("queue_scaling")
    if not qs:
        return ""
    rows = ["## Queue scaling: `Queue.claim` with 1k, 100k, 1M rows", "",
            "`bench/queuefill.py` bulk-inserts pending broadcast recipients (10 per message, "
            "plus 1,000 transactional ones) straight into a fresh SQLite store, then times the "
            "real `Store.open(...).queue.claim(mail_type, 200, ...)` (WAL, `synchronous=FULL`, "
            "through the writer thread: the fsync of the claim's COMMIT is included). Each "
            "claimed batch is released again untimed, so the queue keeps its depth. The claims "
            "take turns between the stores (one per size, round after round), so a slow spell "
            "of the disk lands on every size alike." + _queue_when(result), "",
            "| queued rows | claim 200, median | p90 | transactional claim among them, median |"
            " database | fill |", "|---|---|---|---|---|---|"]
    for n, r in qs.items():
        rows.append(f"| {int(n):,} | {r['median_ms']:.2f} ms | {r['p90_ms']:.2f} ms |"
                    f" {r['tx_median_ms']:.2f} ms | {r['db_mib']:.0f} MiB |"
                    f" {r['fill_seconds']:.0f} s |")
    return "\n".join(rows) + "\n"


def _queue_when(result: dict[str, Any]) -> str:
    at = result.get("queue_scaling_at")
    if not at:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    return (f" Measured on its own at {when} (`python -m bench --queue-into ...`), after the "
            "rest of this run.")


def profile(result: dict[str, Any]) -> str:
    prof = (result.get("throughput") or {}).get("profile")
    if not prof:
        return ""
    rows = ["## Where helo-smtp spends its time", "",
            "py-spy (`record --nonblocking --subprocesses -r 100 -f raw`) on both helo-smtp "
            "processes during one extra accept run per mode (not one of the measured rounds). "
            "Self = the innermost "
            "frame (native time, e.g. a syscall or OpenSSL, counts to the Python frame that "
            "called it); inclusive = anywhere on the stack, thread/event-loop/click plumbing "
            "left out. % of all samples of busy threads. Two self-time rows are waiting, "
            "not work: `_worker (concurrent/futures/thread.py)` is a pool thread waiting for "
            "a job, and `Runner.run` is uvloop's C loop, mostly its `epoll_wait` (py-spy's "
            "non-blocking mode cannot always tell a waiting thread from a running one)."
            + _profile_when(result),
            profile_tables(prof)]
    return "\n".join(rows) + "\n"


IDLE_FRAMES = ("_worker (concurrent/futures/thread.py)", "Runner.run (asyncio/runners.py)")


def _profile_when(result: dict[str, Any]) -> str:
    at = result.get("profile_at")
    if not at:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    return f" Sampled in a run of its own (`--profile-into`), {when}."


def profile_tables(prof: dict[str, Any]) -> str:
    rows: list[str] = []
    for mode, p in prof.items():
        child = p.get("delivery_process_pct")
        where = f", {child:.0f} % of them in the delivery process" if child is not None else ""
        rows += ["", f"**{mode.replace('_', ' ')}** ({p['samples']} samples{where}, "
                 f"{p['accept_rate']:.0f} msg/s during the sampling)", "",
                 "| self % | function | | inclusive % | function |", "|---|---|---|---|---|"]
        for (sf, sp), (inf, ip) in zip(p["self"], p["inclusive"], strict=False):
            rows.append(f"| {sp} | `{sf}` | | {ip} | `{inf}` |")
    return "\n".join(rows)


def whatif(result: dict[str, Any]) -> str:
    w = (result.get("throughput") or {}).get("whatif")
    if not w:
        return ""
    rows = [f"## What-if: `{w['experiment']}` (not the shipped code)", "",
            "`bench/whatif.py` loads into the helo-smtp process before it starts; see its "
            "docstring. Same harness, interleaved with Postfix again, "
            f"{len(w['rounds'])} rounds.", "", "| | per connection | persistent |",
            "|---|---|---|"]
    for relay in ("postfix", "helo-smtp"):
        for key, what in (("accept_rate", "accept"), ("e2e_rate", "end-to-end"),
                          ("msgs_per_relay_cpu_s", "messages per relay CPU-second")):
            cells = [fmt(spread(runs_of({"w": w}, relay, m, key, "w"))) for m in MODES]
            rows.append(f"| {relay} {what} | {cells[0]} | {cells[1]} |")
    if w.get("profile"):
        rows += ["", "Where helo-smtp spends its time with this experiment loaded (py-spy, as "
                 "above): the next hot spots.", profile_tables(w["profile"])]
    return "\n".join(rows) + "\n"


def _command(cmd: str) -> str:
    """``python -m bench ...`` whatever path the interpreter was given."""
    _, sep, tail = cmd.partition("bench/__main__.py")
    return "python -m bench" + tail if sep else cmd


def commands(result: dict[str, Any]) -> str:
    return "\n".join([
        "## Reproduce", "",
        "```sh",
        "bash bench/run.sh            # installs postfix, sasl2-bin, libsasl2-modules,",
        "                             # matplotlib + py-spy into .venv; runs; writes this file",
        "bash bench/run.sh --rounds 1 --seconds 5 --iso-messages 5000   # a quick look",
        ".venv/bin/python -m bench.report bench/results/latest.json   # re-render only",
        "```", "",
        "This run's command line:", "",
        "```", _command(result["command"]), "```", "",
        "Raw numbers (every round, every probe, every memory sample): "
        "`bench/results/latest.json`.", ""])


def _dkim_share(p: dict[str, Any]) -> float:
    return max((pct for f, pct in p["inclusive"] if "(outbound/dkim.py)" in f), default=0.0)


def _bounds(result: dict[str, Any]) -> list[str]:
    """Where the load client, not the relay, set the pace."""
    from bench.report import ceiling

    out = []
    for mode in MODES:
        pf = spread(runs_of(result, "postfix", mode, "accept_rate"))
        cl = spread(ceiling(result, f"aiosmtpd_{mode}"))
        if pf and cl and pf["median"] >= 0.8 * cl["median"]:
            out.append(f"* {mode.replace('_', ' ').capitalize()}: Postfix accepted "
                       f"{pf['median']:.0f} msg/s against a load-client ceiling of "
                       f"{cl['median']:.0f} (bare aiosmtpd): the Python client's own TLS "
                       "handshakes set that pace, so Postfix's number there is a lower bound.")
    iso = (result.get("isolation") or {})
    if "helo-smtp" in iso and "postfix" in iso:
        out.append(_isolation_reading(iso))
    return out


def _isolation_reading(iso: dict[str, Any]) -> str:
    h, p = probe_stats(iso["helo-smtp"], "fill"), probe_stats(iso["postfix"], "fill")
    hd, pd = probe_stats(iso["helo-smtp"], "drain"), probe_stats(iso["postfix"], "drain")
    text = (f"* While 20 clients pushed the broadcast backlog in, transactional p99 was "
            f"{secs(h['p99'])} for helo-smtp and {secs(p['p99'])} for Postfix; while the "
            f"backlog drained, {secs(hd['p99'])} and {secs(pd['p99'])} (p50 {secs(hd['p50'])} "
            f"and {secs(pd['p50'])}). ")
    if (h["p99"] or 0) > (hd["p99"] or 0):
        text += ("During the fill the load client, helo-smtp's listener process and its "
                 "delivery process share the two cores, so the inbound load delays the "
                 "transactional worker too; its separate queue shows once the inbound load "
                 "stops. ")
    text += ("Postfix has one queue: its transactional mail waits among the broadcast "
             "deliveries its queue manager schedules.")
    refused = (iso["helo-smtp"]["fill"].get("errors") or {}).get("421")
    if refused:
        text += (f" The {refused} `421` replies in helo-smtp's fill are "
                 "`limits.command_call_limit` (5,000 of one verb per connection) ending "
                 "sessions that had sent 5,000 messages; those MAILs never got a `250`, and the "
                 "load client does not reconnect, so nothing was lost.")
    return text


def findings(result: dict[str, Any]) -> str:
    """Sentences computed from this run's numbers (no hand-written figures)."""
    rows = ["## Reading the numbers", ""]
    foreign = spread([r.get("foreign_pct", 0.0) for rnd in result["throughput"]["rounds"]
                      for r in rnd["runs"]])
    if foreign and foreign["median"] > 15:
        rows.append(f"* **This run shared the machine.** Work outside the benchmark used a "
                    f"median {foreign['median']:.0f} % of the two cores during the accept runs "
                    "(see Machine). Postfix and helo-smtp ran interleaved under the same "
                    "conditions, so their ratios hold better than the absolute rates.")
    rows += _bounds(result)
    prof = (result["throughput"].get("profile") or {}).get("persistent")
    if prof:
        work = [(f, p) for f, p in prof["self"] if f not in IDLE_FRAMES]
        top = ", ".join(f"`{f}` {p} %" for f, p in work[:3])
        pure = any("rsa_decrypt" in f for f, _ in prof["self"][:10])
        why = ("dkimpy's pure-Python RSA (`dkim/crypto.py: rsa_decrypt`) runs under the GIL "
               "even from `asyncio.to_thread`, so it takes its share from accepting as well"
               if pure else "the RSA step runs in OpenSSL; what remains is dkimpy's "
               "canonicalisation and hashing in Python")
        rows.append(f"* helo-smtp's top self-time frames (persistent sessions, waiting "
                    f"left out; see the profile section): {top}. DKIM "
                    f"signing (`outbound/dkim.py`, inclusive) is {_dkim_share(prof):.0f} % of "
                    f"all samples: {why}.")
    w = result["throughput"].get("whatif")
    if w:
        for mode in MODES:
            base = spread(runs_of(result, "helo-smtp", mode, "e2e_rate"))
            new = spread(runs_of({"w": w}, "helo-smtp", mode, "e2e_rate", "w"))
            pf = spread(runs_of({"w": w}, "postfix", mode, "e2e_rate", "w"))
            if base and new and pf:
                rows.append(f"* With OpenSSL doing the RSA (`{w['experiment']}`, "
                            f"{mode.replace('_', ' ')}): helo-smtp end-to-end "
                            f"{base['median']:.0f} -> {new['median']:.0f} msg/s "
                            f"({new['median'] / base['median']:.1f}x), against Postfix's "
                            f"{pf['median']:.0f} in the same rounds.")
    return "\n".join(rows) + "\n" if len(rows) > 2 else ""
