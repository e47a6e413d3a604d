"""The API's aiohttp application and its listener (``[api]``, SPEC §11).

Every answer is JSON from the catalog (``replies``): aiohttp's own errors (unknown path, body
over ``max_body_bytes``) are rewritten by the middleware, and anything unexpected is a 503
``local_error`` with a correlation id in the log, never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from helo_smtp.api import replies
from helo_smtp.api.keys import KeyCheck
from helo_smtp.api.send import Sender
from helo_smtp.config import APIConfig, Config
from helo_smtp.errors import ConfigError, HeloError, MessageTooLarge, ValidationError
from helo_smtp.http.app import parse_listen
from helo_smtp.models import ChannelRef, MailType

log = logging.getLogger("helo_smtp.api")
MAX_BATCH = 500  # requests per batch (SPEC §11)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Every route: (method, path, handler name); /openapi.json is checked against it in tests.
ROUTES = [
    ("POST", "/send/transactional", "send_transactional"),
    ("POST", "/send/transactional/batch", "batch_transactional"),
    ("POST", "/send/broadcast", "send_broadcast"),
    ("POST", "/send/broadcast/batch", "batch_broadcast"),
]


def check_listen(api: APIConfig) -> tuple[str, int]:
    """(host, port); plaintext only on loopback, or behind a proxy that terminates TLS."""
    try:
        host, port = parse_listen(api.listen)
    except ValueError:
        raise ConfigError("[api] listen must be host:port") from None
    if not api.tls and not api.behind_proxy and not _loopback(host):
        raise ConfigError("[api] tls = false is allowed only on a loopback address, or with "
                          "behind_proxy = true")
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web.middleware
async def boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return replies.respond(*replies.from_error(MessageTooLarge()))
    except web.HTTPNotFound:
        return replies.respond(*replies.fault("not_found"))
    except web.HTTPMethodNotAllowed:
        return replies.respond(405, replies.fault("not_found")[1])
    except HeloError as exc:
        return replies.respond(*replies.from_error(exc))
    except Exception as exc:  # never a 500, never the exception text
        log.error("event=internal_error correlation_id=%s door=api path=%s error=%s",
                  uuid.uuid4().hex[:12], request.path, type(exc).__name__, exc_info=True)
        return replies.respond(*replies.fault())


class Routes:
    def __init__(self, cfg: APIConfig, keys: KeyCheck, sender: Sender) -> None:
        self.cfg = cfg
        self.keys = keys
        self.sender = sender
        self._proxies = {ipaddress.ip_address(p) for p in cfg.trusted_proxies}

    def client_ip(self, request: web.Request) -> str:
        """The peer, or with ``behind_proxy`` the nearest untrusted hop of X-Forwarded-For."""
        peer = request.remote or "127.0.0.1"
        if not self.cfg.behind_proxy or ipaddress.ip_address(peer) not in self._proxies:
            return peer
        for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
            try:
                ip = ipaddress.ip_address(hop.strip())
            except ValueError:
                break
            if ip not in self._proxies:
                return str(ip)
        return peer

    async def _auth(self, request: web.Request) -> tuple[ChannelRef, str]:
        ip = self.client_ip(request)
        return await self.keys.identify(request.headers.get("Authorization"), ip), ip

    @staticmethod
    async def _json(request: web.Request) -> Any:
        raw = await request.read()  # client_max_size applies: 413 past it
        try:
            if len(raw) > 64 * 1024:  # a large batch: decode off the loop
                return await asyncio.to_thread(json.loads, raw)
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("field body is not valid JSON") from None

    async def _send(self, request: web.Request, mail_type: MailType) -> web.Response:
        ref, ip = await self._auth(request)
        body = await self._json(request)
        status, answer = await self.sender.one(
            ref, body, mail_type, request.headers.get("X-Helo-Channel-Id"),
            request.headers.get("X-Helo-Idempotency-Key"), ip)
        return replies.respond(status, answer)

    async def _batch(self, request: web.Request, mail_type: MailType) -> web.Response:
        ref, ip = await self._auth(request)
        body = await self._json(request)
        status, answer = await self.sender.batch(
            ref, body, mail_type, request.headers.get("X-Helo-Channel-Id"), ip, MAX_BATCH)
        return replies.respond(status, answer)

    async def send_transactional(self, request: web.Request) -> web.Response:
        return await self._send(request, MailType.TRANSACTIONAL)

    async def send_broadcast(self, request: web.Request) -> web.Response:
        return await self._send(request, MailType.BROADCAST)

    async def batch_transactional(self, request: web.Request) -> web.Response:
        return await self._batch(request, MailType.TRANSACTIONAL)

    async def batch_broadcast(self, request: web.Request) -> web.Response:
        return await self._batch(request, MailType.BROADCAST)


def build_app(routes: Any, max_body: int) -> web.Application:
    app = web.Application(client_max_size=max_body, middlewares=[boundary])
    for method, path, name in ROUTES:
        app.router.add_route(method, path, getattr(routes, name))
    return app


class APIServer:
    """``await start()`` -> bound port (``[api] listen`` may use port 0); ``await stop()``."""

    def __init__(self, cfg: Config, keys: KeyCheck, sender: Sender,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.cfg = cfg
        self.routes = Routes(cfg.api, keys, sender)
        self.ssl_context = ssl_context
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        host, port = check_listen(self.cfg.api)
        app = build_app(self.routes, self.cfg.api.max_body_bytes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=self.cfg.api.idle_timeout)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("event=api_listening address=%s port=%d tls=%s", host, self.port,
                 self.ssl_context is not None)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
