"""A real webhook receiver: an aiohttp server on loopback, in its own loop thread, that checks
each request's signature the way a user's endpoint would (docs/events.md) and answers with a
scripted status.

    rx = WebhookReceiver(secret).start()
    rx.statuses = [503, 200]     # answers in order, then 200
    rx.events                    # verified JSON bodies, in arrival order
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from typing import Any

from aiohttp import web

from tests.support.relay import LoopThread


def signature_ok(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """A user's check: parse t= and v1=, recompute HMAC-SHA256(secret, "<t>.<body>"),
    compare in constant time, refuse stale timestamps."""
    fields = [part.split("=", 1) for part in header.split(",")]
    t = next(v for k, v in fields if k == "t")
    if abs(time.time() - int(t)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")


class WebhookReceiver:
    def __init__(self, secret: str = "", port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.statuses: list[int] = []
        self.delay = 0.0  # seconds each answer waits (a slow receiver)
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # every request, verified or not
        self.bad_signatures = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._lt: LoopThread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            ok = bool(self.secret) and signature_ok(
                self.secret, request.headers.get("X-Helo-Signature", ""), body)
            event = json.loads(body)
            with self._lock:
                self.requests.append({"headers": dict(request.headers), "event": event,
                                      "signature_ok": ok})
                status = self.statuses.pop(0) if self.statuses else 200
                if not ok:
                    self.bad_signatures += 1
                    status = 401
                elif status == 200:
                    self.events.append(event)
            return web.Response(status=status, text="ok")
        finally:
            with self._lock:
                self.active -= 1

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> WebhookReceiver:
        self._lt = LoopThread()
        self._lt.run(self._start())
        return self

    def stop(self) -> None:
        if self._lt is None:
            return
        if self._runner is not None:
            self._lt.run(self._runner.cleanup())
        self._lt.close()
        self._lt = None

    def types(self) -> list[str]:
        with self._lock:
            return [e["type"] for e in self.events]
