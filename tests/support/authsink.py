"""A smarthost for tests: an aiosmtpd 1.4.6 server that requires SMTP AUTH (like a
submission port of SES, Mailgun or a Postfix relay), over STARTTLS, implicit TLS or none.

    box = AuthSink("127.0.1.20", tls="starttls", ca=ca, users={"relay": "pw"}).start()
    box.port, box.messages[-1]["auth"], box.messages[-1]["tls"], box.logins
    box.stop()
"""

from __future__ import annotations

import ssl
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

#: aiosmtpd warns for each session of the "none" smarthost (AUTH without TLS is what that case
#: tests): modules using it add ``pytestmark = IGNORE_PLAINTEXT_AUTH``.
IGNORE_PLAINTEXT_AUTH = "ignore:Requiring AUTH while not requiring TLS:UserWarning"


class _Handler:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.messages: list[dict[str, Any]] = []
        self.logins: list[tuple[str, bool]] = []  # (username, accepted)

    def authenticate(self, server: SMTP, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, pw = data.login.decode(), data.password.decode()
        ok = self.users.get(user) == pw
        self.logins.append((user, ok))
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.messages.append({"mail_from": envelope.mail_from,
                              "rcpt_tos": list(envelope.rcpt_tos), "data": envelope.content,
                              "auth": session.auth_data,
                              "tls": server.transport.get_extra_info("ssl_object") is not None})
        return "250 2.0.0 Ok: relayed"


class _Controller(Controller):
    def _trigger_server(self) -> None:
        # aiosmtpd 1.4.6 + port=0: learn the real port before its readiness probe
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class AuthSink:
    """``tls``: "starttls" (offered; AUTH only after it), "implicit" (TLS from the first
    byte) or "none" (AUTH in clear allowed)."""

    def __init__(self, host: str, *, tls: str, ca: Any = None, users: dict[str, str],
                 name: str = "smarthost.test") -> None:
        self.h = _Handler(users)
        ctx = None
        if tls != "none":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(name, host).configure_cert(ctx)
        kw: dict[str, Any] = {
            "hostname": host, "port": 0, "server_hostname": name, "auth_required": True,
            # aiosmtpd only counts STARTTLS as TLS: on an implicit-TLS port it would hide AUTH
            "auth_require_tls": tls == "starttls", "authenticator": self.h.authenticate}
        if tls == "implicit":
            kw["ssl_context"] = ctx
        elif tls == "starttls":
            kw["tls_context"] = ctx
        self.ctl = _Controller(self.h, **kw)
        self.host = host
        self.port = 0

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.h.messages

    @property
    def logins(self) -> list[tuple[str, bool]]:
        return self.h.logins

    def start(self) -> AuthSink:
        self.ctl.start()
        self.port = self.ctl.port
        return self

    def stop(self) -> None:
        self.ctl.stop()
