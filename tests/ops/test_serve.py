"""`helo-smtp serve` as systemd runs it: a subprocess with a notify socket of the test's own.

READY=1 means the ports accept connections; the watchdog is pinged; SIGTERM drains a delivery in
progress and exits 0 without sending anything twice; SIGHUP makes a credential revoked with the
CLI fail at the next AUTH. One run is under MemoryDenyWriteExecute's rule (prctl PR_SET_MDWE),
as the unit runs it.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import ssl
import subprocess
from email.message import EmailMessage

import pytest

from helo_smtp import errors
from helo_smtp.store import Store
from tests.ops.notifysock import fields
from tests.ops.serveproc import HELO_SMTP, mdwe_refuses_wx, mdwe_supported
from tests.support.waiting import wait_for

RCPT = "someone@example.test"  # MX mx1.example.test -> the first sink


def message(tenant, subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = tenant.sender, RCPT, subject
    msg.set_content("body\n")
    return msg


def submit(port: int, ctx: ssl.SSLContext, tenant, msg: EmailMessage | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.starttls(context=ctx)
        c.login(tenant.username, tenant.secret)
        if msg is not None:
            c.send_message(msg)


def banner(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(512)
        assert chunk, "connection closed before the banner"
        data += chunk
    return data.decode()


def test_ready_means_listening_and_runs_under_mdwe(serve, sinks, client_ctx):
    use_mdwe = mdwe_supported()
    if use_mdwe:
        assert mdwe_refuses_wx()  # the rule is really in force for processes started so
    proc, _path, tenant = serve(mdwe=use_mdwe, watchdog_usec=400_000, abstract=True)
    datagrams = proc.wait_ready()
    assert len(datagrams) == 1  # READY=1 is the first thing systemd hears
    assert set(proc.ports) == {"submission", "submissions", "broadcast"}
    # At READY=1 every listener already accepts: one attempt each, no retry loop.
    for name in ("submission", "broadcast"):
        with socket.create_connection(("127.0.0.1", proc.ports[name]), timeout=5) as s:
            assert banner(s).startswith("220 ")
    with (socket.create_connection(("127.0.0.1", proc.ports["submissions"]), timeout=5) as raw,
          client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s):
        assert banner(s).startswith("220 ")
    assert fields(datagrams[0])["STATUS"].endswith("queue transactional=0 broadcast=0")
    # The watchdog is pinged (WATCHDOG_USEC=0.4 s: every 0.2 s).
    proc.notify.until(lambda d: d == "WATCHDOG=1", timeout=10)
    # The whole path works under MemoryDenyWriteExecute: TLS, AUTH, commit, delivery.
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "under mdwe"))
    wait_for(lambda: any(RCPT in m["rcpt_tos"] for m in sinks[0].h.messages), 15,
             what="delivery to the sink")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output
    assert "STOPPING=1" in proc.notify.until(lambda d: "STOPPING=1" in d, timeout=5)[-1]
    assert "Traceback" not in proc.output


def test_sigterm_lets_a_slow_delivery_finish_once(serve, sinks, client_ctx, tmp_path):
    sink = sinks[0]
    sink.h.stall = {"DATA": 1.5}  # the final DATA reply comes 1.5 s late
    proc, _path, tenant = serve()
    proc.wait_ready()
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "slow"))
    wait_for(lambda: any(cmd[1] == "DATA" for cmd in sink.h.commands), 15,
             what="the relay sending DATA to the sink")
    proc.signal(signal.SIGTERM)  # mid-delivery: the sink has not answered the dot yet
    assert proc.wait() == 0, proc.output
    assert len(sink.h.messages) == 1 and sink.h.messages[0]["rcpt_tos"] == [RCPT]
    assert [cmd[1] for cmd in sink.h.commands].count("DATA") == 1  # sent once, not retried
    # Recorded as delivered before exit, so no later start sends it again.
    store = Store.open(str(tmp_path / "relay.db"))
    try:
        assert store.queue.accounting() == {"delivered": 1}
    finally:
        store.close()


def test_sighup_picks_up_a_credential_revoked_by_the_cli(serve, client_ctx):
    proc, path, tenant = serve()
    proc.wait_ready()
    port = proc.ports["submission"]
    submit(port, client_ctx, tenant)  # works, and warms any credential cache
    revoke = subprocess.run([HELO_SMTP, "--config", str(path), "credentials", "revoke",
                             tenant.username], capture_output=True, text=True, timeout=30)
    assert revoke.returncode == 0, revoke.stderr
    proc.signal(signal.SIGHUP)
    proc.wait_log(r"event=reloaded")
    with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
        submit(port, client_ctx, tenant)
    got = f"{exc.value.smtp_code} {exc.value.smtp_error.decode()}"
    assert got == errors.CATALOG["auth_invalid"].line()
    assert tenant.secret not in proc.output
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output
