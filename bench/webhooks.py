"""``python -m bench.webhooks``: how many events per second the webhook dispatcher delivers to
a local receiver, and ``--write`` puts the numbers into docs/benchmarks.md (its own section,
which ``bench/report.py`` keeps when it rewrites the rest of the file).

The receiver is a separate process (an aiohttp server on loopback that checks every signature,
as a user's endpoint would), so it does not share the dispatcher's core. Events are planted in
a fresh SQLite store with their pending deliveries (``store.events.add``, the relay's own
write path), then the dispatcher drains them; the figure is events / seconds until none is
pending.

    python -m bench.webhooks --events 5000 --concurrency 4 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- webhooks:begin -->", "<!-- webhooks:end -->"


def _receiver(port: Any, secret: str, ready: Any) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers["X-Helo-Signature"]
        fields = [p.split("=", 1) for p in header.split(",")]
        t = next(v for k, v in fields if k == "t")
        want = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        ok = any(hmac.compare_digest(want, v) for k, v in fields if k == "v1")
        return web.Response(status=200 if ok else 401)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/h", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.value = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _plant(store: Any, channel_id: str, n: int) -> None:
    from helo_smtp.store import events

    def fn(c: Any) -> None:
        for i in range(n):
            events.add(c, "recipient.accepted", message_id=f"m{i}", recipient=f"r{i}@x.test",
                       channel_id=channel_id)
    store.db.write(fn)


async def _drain(cfg: Any, store: Any, n: int) -> float:
    from helo_smtp.events.dispatcher import Dispatcher

    store.db.bind_loop(asyncio.get_running_loop())
    task = asyncio.create_task(Dispatcher(cfg, store).run())
    t0 = time.perf_counter()
    while await asyncio.to_thread(store.webhooks.pending_count):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    store.db.unbind_loop()
    failed = store.db.read(lambda c: c.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'").fetchone()[0])
    assert failed == 0, f"{failed} deliveries not delivered"
    return n / elapsed


def run_one(n: int, concurrency: int, port: int, secret: str) -> float:
    from helo_smtp import config
    from helo_smtp.models import AccountStatus
    from helo_smtp.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(os.path.join(tmp, "bench.db"))
        try:
            acc = store.accounts.create("bench", AccountStatus.ACTIVE)
            ch = store.channels.create(acc.id, "bench")
            ep, _ = store.webhooks.create(ch.id, f"http://127.0.0.1:{port}/h", None,
                                          concurrency)
            store.db.write(lambda c: c.execute("UPDATE webhooks SET secrets = ? WHERE id = ?",
                                               (f'[{{"secret": "{secret}"}}]', ep.id)))
            _plant(store, ch.id, n)
            cfg = config.from_dict({"webhooks": {"allow_private": True, "poll_seconds": 0.05},
                                    "dns": {"nameservers": ["127.0.0.1"]}})
            return asyncio.run(_drain(cfg, store, n))
        finally:
            store.close()


def section(rows: list[tuple[int, int, float]], load: str) -> str:
    lines = [BEGIN, "", "## Webhook dispatcher throughput", "",
             "`python -m bench.webhooks` (written by it; `bench/report.py` keeps this section).",
             "Events planted in a fresh SQLite store with their pending deliveries, drained by "
             "the dispatcher to an aiohttp receiver in its own process on loopback that checks "
             "every signature. **Measured on a busy machine** (2 cores shared by several "
             f"engineers' test runs; load average {load} at the start): read the numbers as a "
             "floor, not a ceiling.", "",
             "| events | per-endpoint concurrency | events/s |", "|---|---|---|"]
    lines += [f"| {n:,} | {c} | {eps:,.0f} |" for n, c, eps in rows]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines += ["", f"Python {platform.python_version()}, {when}.", "", END]
    return "\n".join(lines) + "\n"


def splice(text: str, sec: str) -> str:
    """``text`` with its webhooks section replaced by ``sec`` (appended if missing)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + sec + tail
    return text.rstrip("\n") + "\n\n" + sec


def kept(path: Path) -> str:
    """The webhooks section of an existing file (for report.py), or ''."""
    if not path.exists():
        return ""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return ""
    return BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    p.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    a = p.parse_args()
    secret = "whsec_bench"
    port, ready = multiprocessing.Value("i", 0), multiprocessing.Event()
    proc = multiprocessing.Process(target=_receiver, args=(port, secret, ready), daemon=True)
    proc.start()
    ready.wait(30)
    load = f"{os.getloadavg()[0]:.1f}"
    rows = []
    try:
        for c in a.concurrency:
            eps = run_one(a.events, c, port.value, secret)
            rows.append((a.events, c, eps))
            print(f"events={a.events} concurrency={c} events_per_s={eps:.0f}", flush=True)
    finally:
        proc.terminate()
        proc.join(10)
    if a.write:
        md = ROOT / "docs" / "benchmarks.md"
        md.write_text(splice(md.read_text(), section(rows, load)))
        print("wrote", md)


if __name__ == "__main__":
    main()
