"""A local HTTPS server for MTA-STS policy files (RFC 8461 §3.3), for the outbound tests.

aiohttp on its own loop in a thread, TLS with a certificate from the test CA (trustme) for the
``mta-sts.<domain>`` names it serves. ``policies[host]`` is what ``GET
/.well-known/mta-sts.txt`` returns for that Host: (status, body, content type); ``hits`` counts
requests per host.

    srv = PolicyServer(ip, port, ca, ["mta-sts.a.test"]).start()
    srv.policies["mta-sts.a.test"] = (200, policy("enforce", ["mx3.example.test"]), "text/plain")
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter

import trustme
from aiohttp import web

from tests.support.relay import LoopThread


def policy(mode: str, mx: list[str], max_age: int = 86400) -> str:
    """A policy file body as RFC 8461 §3.2 writes it (CRLF lines)."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx),
             f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


class PolicyServer:
    def __init__(self, ip: str, port: int, ca: trustme.CA, names: list[str]) -> None:
        self.ip, self.port = ip, port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*names).configure_cert(self.ctx)
        self.policies: dict[str, tuple[int, str, str]] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._lt: LoopThread | None = None
        self._runner: web.AppRunner | None = None

    async def _serve(self, request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        with self._lock:
            self.hits[host] += 1
            status, body, ctype = self.policies.get(host, (404, "not found", "text/plain"))
        return web.Response(status=status, text=body, content_type=ctype)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/mta-sts.txt", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.ip, self.port, ssl_context=self.ctx).start()

    def start(self) -> PolicyServer:
        self._lt = LoopThread()
        self._lt.run(self._start())
        return self

    def reset(self) -> None:
        with self._lock:
            self.policies.clear()
            self.hits.clear()

    def stop(self) -> None:
        if self._lt is not None and self._runner is not None:
            self._lt.run(self._runner.cleanup())
            self._lt.close()
            self._lt = None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["PolicyServer", "policy"]
