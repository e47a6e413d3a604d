"""The HTTP send API under test: the real relay (its own loop, real sockets), a real HTTP
client (aiohttp) over TLS to the ``[api]`` listener, delivery to the real sinks."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from typing import Any

import aiohttp
import pytest

from helo_smtp.errors import CATALOG
from tests.support.relay import RelayHandle
from tests.support.submit import TIMEOUT, build


class Api:
    """A running relay with the API on, and a channel key for its tenant."""

    def __init__(self, relay: RelayHandle, ctx: ssl.SSLContext) -> None:
        self.relay = relay
        self.ctx = ctx
        t = relay.tenant
        assert t is not None
        _, self.key = relay.store.api_keys.create(t.account.id, t.channel.id, "test")
        self.base = f"https://127.0.0.1:{relay.relay.api_port}"

    @property
    def store(self) -> Any:
        return self.relay.store

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = "",
             headers: dict[str, str] | None = None, data: bytes | None = None
             ) -> tuple[int, Any, dict[str, str]]:
        """One request on its own connection: (status, JSON body, headers)."""
        return asyncio.run(self._call(method, path, body, key, headers or {}, data))

    async def _call(self, method: str, path: str, body: Any, key: str | None,
                    headers: dict[str, str], data: bytes | None
                    ) -> tuple[int, Any, dict[str, str]]:
        if key is not None:
            headers = {"Authorization": f"Bearer {key or self.key}", **headers}
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.request(
                method, self.base + path, json=body if data is None else None, data=data,
                headers=headers, ssl=self.ctx) as r:
            payload = await r.json(content_type=None)
            return r.status, payload, dict(r.headers)

    def send(self, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        status, payload, _ = self.call("POST", "/send/transactional", body, **kw)
        return status, payload

    def message(self, to: list[str] | None = None, **fields: Any) -> dict[str, Any]:
        """A valid request from the tenant's sender."""
        t = self.relay.tenant
        assert t is not None
        return {"from": t.sender, "to": to or ["ann@example.test"], "subject": "hello",
                "text": "Hello there.", **fields}

    def smtp_code(self, rcpts: list[str], *, sender: str | None = None,
                  listener: str = "submission", **kw: Any) -> str:
        """Submit over SMTP; the catalog name of the first refusal, or ``accepted``."""
        t = self.relay.tenant
        assert t is not None
        sender = sender or t.sender
        s = smtplib.SMTP("127.0.0.1", self.relay.ports[listener], timeout=TIMEOUT)
        try:
            s.ehlo("app.test")
            s.starttls(context=self.ctx)
            s.ehlo("app.test")
            s.login(t.username, t.secret)
            replies = [s.mail(sender)]
            for r in rcpts:
                if replies[-1][0] >= 300:
                    break
                replies.append(s.rcpt(r))
            if replies[-1][0] < 300:
                s.putcmd("data")
                replies.append(s.getreply())
                s.send(_dot(build(sender, rcpts, **kw)))
                replies.append(s.getreply())
        finally:
            s.close()
        for code, text in replies:
            if code >= 400:
                return catalog_name(f"{code} {text.decode()}")
        return "accepted"


def _dot(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines) + b"\r\n.\r\n"


def catalog_name(line: str) -> str:
    """The catalog entry a wire line came from."""
    for reply in CATALOG.values():
        if line.startswith(reply.line()) or (reply.name == "validation_error"
                                              and line.startswith(reply.line(""))):
            return reply.name
    raise AssertionError(f"not a catalog line: {line}")


@pytest.fixture
def api(relay_factory, sinks, dns, client_ctx):
    """``api(**config_overrides)`` -> a started Api (delivery on)."""

    def start(**overrides: Any) -> Api:
        overrides["api"] = {"listen": "127.0.0.1:0", **overrides.get("api", {})}
        return Api(relay_factory(**overrides), client_ctx)

    return start
