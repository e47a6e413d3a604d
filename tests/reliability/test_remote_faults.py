"""Remote faults, scripted with Postfix's ``smtp-sink`` (and aiosmtpd sinks for certificates):
each outcome is the one the outcome policy (helo_smtp/outbound/outcome.py) names, and no
exception escapes a worker (no traceback in the relay's log, both worker tasks alive).

Covered elsewhere, not repeated: 421 mid-session, per-recipient 5xx, MX fallback, 4xx retry,
wrong-name certificates, STARTTLS handshake failure and the tarpit cut at the total deadline
(tests/e2e/). Here every fault runs at once, one destination domain each, on one relay.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass

import pytest

from helo_smtp.models import MailType
from tests.reliability import smtpsink
from tests.reliability.smtpsink import SmtpSink
from tests.support.figures import record
from tests.support.net import NET
from tests.support.outbound import capture_log, extra_sinks, wait_states  # noqa: F401
from tests.support.sinks import Sink
from tests.support.submit import submit
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(not smtpsink.available(),
                                reason="smtp-sink is not installed (tests/run.sh installs it)")

DELIVERY = {"connect_timeout": 1.0, "command_timeout": 1.0, "data_timeout": 1.0,
            "total_deadline": 8.0, "retry_base": 300.0, "idle_connection_seconds": 1.0}


@dataclass(frozen=True)
class Fault:
    name: str
    options: tuple[str, ...]
    state: str  # the recipient's state after the first attempt
    code: int | None = None  # last reply code recorded (None: a local failure)
    status: str | None = None  # last enhanced status recorded
    backup: bool = False  # a healthy second MX exists (MX 20)
    backup_gets: bool = False  # ... and it must (or must not) receive the message


FAULTS = [
    Fault("banner-421", ("-Q", "CONNECT"), "deferred", 421),
    # a 5xx greeting says nothing about the recipient: like a 4xx (smtp_skip_5xx_greeting)
    Fault("banner-554", ("-f", "CONNECT", "-B", "554 5.7.1 No SMTP service here"), "deferred",
          554),
    Fault("mail-451", ("-r", "MAIL", "-b", "451 4.3.0 Try again later"), "deferred", 451,
          "4.3.0"),
    Fault("mail-550", ("-f", "MAIL", "-B", "550 5.7.1 Sender rejected"), "bounced", 550,
          "5.7.1"),
    Fault("rcpt-452", ("-r", "RCPT", "-b", "452 4.2.2 Mailbox full"), "deferred", 452, "4.2.2"),
    Fault("rcpt-550", ("-f", "RCPT", "-B", "550 5.1.1 No such user"), "bounced", 550, "5.1.1"),
    Fault("data-451", ("-r", "DATA", "-b", "451 4.3.0 Not now"), "deferred", 451, "4.3.0"),
    Fault("data-554", ("-f", "DATA", "-B", "554 5.6.0 Not that"), "bounced", 554, "5.6.0"),
    Fault("dot-451", ("-r", ".", "-b", "451 4.7.1 Greylisted"), "deferred", 451, "4.7.1"),
    Fault("dot-550", ("-f", ".", "-B", "550 5.7.1 Message refused as spam"), "bounced", 550,
          "5.7.1"),
    # lost after the final dot: the message may have been taken; never the next host now
    Fault("dot-drop", ("-q", "."), "deferred", None, "4.4.2", backup=True, backup_gets=False),
    Fault("dot-timeout", ("-W", ".:5"), "deferred", None, "4.4.2", backup=True,
          backup_gets=False),
    # lost before DATA: nothing was taken, so the next host gets it in the same attempt
    Fault("mail-drop", ("-q", "MAIL"), "delivered", backup=True, backup_gets=True),
    Fault("rcpt-timeout", ("-W", "rcpt:5"), "deferred", None, "4.4.2"),
    Fault("banner-tarpit", ("-W", "connect:5"), "deferred", None),
    Fault("ehlo-550", ("-f", "EHLO", "-B", "550 5.5.1 No ESMTP here"), "delivered"),  # HELO
    Fault("ehlo-helo-550", ("-f", "EHLO,HELO", "-B", "550 5.5.1 Go away"), "bounced", 550),
    Fault("no-starttls", (), "delivered"),  # opportunistic: plain text is fine
    Fault("no-starttls-required", (), "deferred", None, "4.7.4"),
]


def _domain(f: Fault) -> str:
    return f"{f.name}.faults.test"


def test_smtp_sink_faults_follow_the_outcome_policy(relay_factory, sinks, dns, mx_port,
                                                   client_ctx):
    started: list[SmtpSink] = []
    backup_ip = NET + "10"  # sinks[0], mx1.example.test: a healthy MX 20 where wanted
    try:
        for i, f in enumerate(FAULTS):
            ip = f"{NET}{20 + i}"
            started.append(SmtpSink(ip, mx_port, list(f.options)))
            dns.add(_domain(f), "MX", f"10 mx.{_domain(f)}.",
                    *([f"20 backup.{_domain(f)}."] if f.backup else []))
            dns.add(f"mx.{_domain(f)}", "A", ip)
            dns.add(f"backup.{_domain(f)}", "A", backup_ip)
        with capture_log("helo_smtp") as logs:
            relay = relay_factory(delivery={**DELIVERY, "require_tls_domains": [
                _domain(FAULTS[-1])]})
            ids = {f.name: submit(relay, client_ctx, [f"user@{_domain(f)}"]) for f in FAULTS}
            for f in FAULTS:
                wait_states(relay.store, ids[f.name], lambda c, f=f: c.get(f.state) == 1,
                            timeout=30)
            workers = [t for t in relay.relay._tasks if t.get_name().startswith("worker-")]
            assert len(workers) == 2 and not any(t.done() for t in workers)  # still running
        assert [r for r in logs.records if r.exc_info] == []  # no traceback, anywhere
        assert "Traceback" not in "\n".join(r.getMessage() for r in logs.records)
        for f, sink in zip(FAULTS, started, strict=True):
            _check(relay, f, ids[f.name], sink, sinks[0])
        suppressed = {s.address for s in relay.store.suppressions.list(relay.tenant.channel.id)}
        assert suppressed == {"user@rcpt-550.faults.test"}  # only the unknown user
    finally:
        for s in started:
            s.stop()
    record("remote_faults_smtp_sink", scenarios=len(FAULTS),
           outcomes=",".join(f"{f.name}={f.state}" for f in FAULTS))


def _check(relay, f: Fault, mid: str, sink: SmtpSink, backup: Sink) -> None:
    [row] = relay.store.admin.recipients(mid)
    assert row["state"] == f.state, (f.name, row)
    if f.state != "delivered":
        assert row["last_code"] == f.code, (f.name, row)
        if f.status:
            assert row["last_status"] == f.status, (f.name, row)
        assert row["category"], (f.name, row)
    at_backup = [m for m in backup.h.messages if m["rcpt_tos"] == [f"user@{_domain(f)}"]]
    if f.backup:
        assert bool(at_backup) == f.backup_gets, (f.name, at_backup)
    if f.name in ("no-starttls", "ehlo-550"):
        [dumped] = sink.messages()
        assert mid.encode() in dumped
        [attempt] = relay.store.admin.attempts(mid)
        assert attempt["tls"] == 0  # smtp-sink has no STARTTLS
    if f.name == "rcpt-550":
        assert row["category"] == "invalid_recipient"


# ---- certificates: expired ---------------------------------------------------------------
def _expired_sink(ca, host: str, port: int, name: str) -> Sink:
    now = datetime.datetime.now(datetime.UTC)
    cert = ca.issue_cert(name, host, not_before=now - datetime.timedelta(days=30),
                         not_after=now - datetime.timedelta(days=1))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    sink = Sink(host, port, name)
    sink.ctl.SMTP_kwargs["tls_context"] = ctx
    return sink.start()


def test_expired_certificate_defers_required_tls_and_passes_opportunistic(
        relay_factory, sinks, dns, ca, mx_port, client_ctx, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    host = f"{NET}45"
    sink = _expired_sink(ca, host, mx_port, "mx.expired.test")
    try:
        for d in ("strict-expired.test", "loose-expired.test"):
            dns.add(d, "MX", "10 mx.expired.test.")
        dns.add("mx.expired.test", "A", host)
        relay = relay_factory(delivery={**DELIVERY, "tls_ca_file": str(ca_file),
                                        "require_tls_domains": ["strict-expired.test"]})
        mid = submit(relay, client_ctx, ["a@strict-expired.test", "b@loose-expired.test"])
        wait_states(relay.store, mid, lambda c: c == {"deferred": 1, "delivered": 1})
        rows = {a["address"]: a for a in relay.store.admin.attempts(mid)}
        strict = rows["a@strict-expired.test"]
        assert (strict["stage"], strict["status"], strict["category"]) == (
            "starttls", "4.7.5", "tls")
        assert "expired" in strict["text"].lower()
        assert rows["b@loose-expired.test"]["tls"] == 1  # RFC 7435: any certificate will do
        wait_for(lambda: len(sink.h.messages) == 1)
        assert sink.h.messages[0]["tls"] and sink.h.messages[0]["rcpt_tos"] == [
            "b@loose-expired.test"]
        assert relay.store.queue.pending_count(MailType.TRANSACTIONAL) == 1
    finally:
        sink.stop()
