"""The HTTP server (aiohttp) on the relay's event loop.

Routes (tokens from ``helo_smtp.tracking.tokens``; a bad, altered or wrong-kind token is a 404 and
counts nothing):

    GET  /o/<token>.gif   open pixel: records an open, answers a 1x1 transparent GIF
    GET  /c/<token>       click: records a click, 302 to the URL bound into the token
    GET  /u/<token>       confirmation page with a button (records nothing)
    POST /u/<token>       RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click; no
                          cookies, no auth): suppresses at once
    GET  /metrics         Prometheus text format (default registry)
    GET  /healthz         200 when the database answers

Recording is best-effort for opens and clicks (the reader still gets the image or the
redirect if the store fails); an unsubscribe that could not be stored answers 503, never a
page claiming success.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from helo_smtp.config import Config
from helo_smtp.http import pages
from helo_smtp.ports import Tracking
from helo_smtp.runtime import metrics
from helo_smtp.store.engagement import Hit
from helo_smtp.tracking import tokens

log = logging.getLogger("helo_smtp.http")

NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
            "Pragma": "no-cache"}
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"  # kept as is; anything else (spaces, controls) is escaped
MAX_UNSUBSCRIBE_BODY = 64 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"[http] listen must be host:port, not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")[:200]


class Routes:
    """Request handlers bound to one store and token secret."""

    def __init__(self, store: Tracking, secret: bytes) -> None:
        self.store = store
        self.secret = secret

    def _token(self, request: web.Request, kind: str, suffix: str = "") -> tokens.Token:
        raw = request.match_info["token"]
        if suffix and raw.endswith(suffix):
            raw = raw[:-len(suffix)]
        token = tokens.read_token(self.secret, raw, kind)
        if token is None:
            raise web.HTTPNotFound(text=pages.not_found(), content_type="text/html")
        return token

    async def _record(self, kind: str, token: tokens.Token, **data: str) -> Hit | None:
        hit = await self.store.engagement.record(kind, token.message_id, token.recipient,
                                                 **data)
        if hit is not None and hit.first:
            metrics.ENGAGEMENT.labels(kind).inc()
        return hit

    async def open_pixel(self, request: web.Request) -> web.Response:
        token = self._token(request, tokens.OPEN, ".gif")
        try:
            await self._record("open", token, user_agent=_user_agent(request))
        except Exception:  # the reader still gets the image
            log.exception("event=open_not_recorded message=%s", token.message_id)
        return web.Response(body=pages.PIXEL_GIF, content_type="image/gif", headers=NO_STORE)

    async def click(self, request: web.Request) -> web.Response:
        token = self._token(request, tokens.CLICK)
        url = quote(token.url, safe=_URL_SAFE)
        if not url.lower().startswith(("http://", "https://")):
            raise web.HTTPNotFound(text=pages.not_found(), content_type="text/html")
        try:
            await self._record("click", token, url=token.url, user_agent=_user_agent(request))
        except Exception:  # the reader still gets where they were going
            log.exception("event=click_not_recorded message=%s", token.message_id)
        # no-referrer: the target never sees the token URL.
        raise web.HTTPFound(url, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        token = self._token(request, tokens.UNSUBSCRIBE)
        return web.Response(text=pages.confirm_unsubscribe(token.recipient),
                            content_type="text/html",
                            headers={**NO_STORE, "X-Robots-Tag": "noindex"})

    async def unsubscribe(self, request: web.Request) -> web.Response:
        """RFC 8058 §3.2: the POST body carries ``List-Unsubscribe=One-Click`` (as
        application/x-www-form-urlencoded or multipart/form-data)."""
        token = self._token(request, tokens.UNSUBSCRIBE)
        form = await request.post()
        if form.get("List-Unsubscribe") != "One-Click":
            return web.Response(status=400, text=pages.bad_request(), content_type="text/html")
        try:
            hit = await self._record("unsubscribe", token, user_agent=_user_agent(request))
        except Exception:  # never claim an unsubscribe that was not stored
            log.exception("event=unsubscribe_not_recorded message=%s", token.message_id)
            return web.Response(status=503, text=pages.unavailable(), content_type="text/html",
                                headers={"Retry-After": "300"})
        if hit is None:  # the message is gone: nothing to unsubscribe from
            return web.Response(status=404, text=pages.not_found(), content_type="text/html")
        log.info("event=unsubscribed message=%s channel=%s", hit.message_id, hit.channel_id)
        return web.Response(text=pages.unsubscribed(token.recipient), content_type="text/html",
                            headers=NO_STORE)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(metrics.scrape_registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            ok = self.store.ping()
        except Exception:  # any store failure means unhealthy
            log.exception("event=healthz_failed")
            ok = False
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "unavailable\n")


def build_app(store: Tracking, secret: bytes) -> web.Application:
    r = Routes(store, secret)
    app = web.Application(client_max_size=MAX_UNSUBSCRIBE_BODY)
    app.router.add_get("/o/{token}", r.open_pixel, allow_head=False)
    app.router.add_get("/c/{token}", r.click, allow_head=False)
    app.router.add_get("/u/{token}", r.unsubscribe_page)
    app.router.add_post("/u/{token}", r.unsubscribe)
    app.router.add_get("/metrics", r.metrics)
    app.router.add_get("/healthz", r.healthz)
    return app


class HTTPServer:
    """``await start()`` -> bound port (``[http] listen`` may use port 0); ``await stop()``."""

    def __init__(self, cfg: Config, store: Tracking) -> None:
        self.cfg = cfg
        self.store = store
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        host, port = parse_listen(self.cfg.http.listen)
        # With no [http] secret this is a one-off write of the generated key, at start only.
        secret = tokens.tracking_secret(self.cfg.http, self.store.settings)
        runner = web.AppRunner(build_app(self.store, secret), access_log=None,
                               handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        public = self.cfg.http.public_url
        if public and not public.lower().startswith("https://"):
            # RFC 8058 §3.1: mailbox providers only offer one-click for an HTTPS URI.
            log.warning("event=public_url_not_https url=%s", public)
        log.info("event=http_listening address=%s port=%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
