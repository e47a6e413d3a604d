"""No AUTH secret reaches the log: a failed and a successful AUTH (PLAIN and LOGIN) through the
real listener, with every logger at DEBUG, leave neither the password nor its base64 forms."""

from __future__ import annotations

import base64
import io
import smtplib

import pytest

from helo_smtp import errors
from helo_smtp.config import LoggingConfig
from helo_smtp.runtime import logs


@pytest.fixture
def log_buffer():
    buf = io.StringIO()
    logs.setup(LoggingConfig(format="kv", level="DEBUG"), stream=buf)
    yield buf
    logs.reset()
    logs.clear_secrets()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def try_auth(port: int, ctx, mechanism: str, user: str, password: str) -> int:
    """AUTH on a fresh connection; the reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.starttls(context=ctx)
        c.ehlo("client.test")
        c.user, c.password = user, password
        method = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login}[mechanism]
        try:
            code, _ = c.auth(mechanism, method, initial_response_ok=mechanism == "PLAIN")
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        return code


def test_auth_secrets_never_reach_the_log(relay_factory, client_ctx, log_buffer):
    relay = relay_factory(deliver=False)
    port, user, secret = relay.ports["submission"], relay.tenant.username, relay.tenant.secret
    wrong = "Wr0ng-" + secret[::-1]
    invalid = errors.CATALOG["auth_invalid"].code
    for mechanism in ("PLAIN", "LOGIN"):
        assert try_auth(port, client_ctx, mechanism, user, wrong) == invalid
        assert try_auth(port, client_ctx, mechanism, user, secret) == 235
    out = log_buffer.getvalue()
    # The sessions were logged (aiosmtpd logs every line at DEBUG), and the filter did not
    # blank what is no secret: the EHLO reply still lists the mechanisms.
    assert "250 AUTH PLAIN LOGIN" in out and "event=auth_ok" in out
    for password in (secret, wrong):
        for leaked in (password, b64(password), b64(f"\0{user}\0{password}")):
            assert leaked not in out, leaked
