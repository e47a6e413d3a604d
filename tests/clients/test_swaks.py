"""swaks, a client no one here wrote: STARTTLS on 587 and implicit TLS on 465, AUTH PLAIN and
LOGIN, with and without PIPELINING; each gets the documented replies and the mail arrives at
the sink with the control header stripped."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from helo_smtp.errors import CATALOG
from tests.clients.conftest import QUEUED, arrived
from tests.support.figures import record

swaks = shutil.which("swaks")
pytestmark = pytest.mark.skipif(swaks is None, reason="swaks is not installed (tests/run.sh)")

COMBOS = [("submission", "--tls", "PLAIN", True), ("submission", "--tls", "LOGIN", False),
          ("submissions", "--tls-on-connect", "LOGIN", True),
          ("submissions", "--tls-on-connect", "PLAIN", False)]


def test_swaks_tls_modes_auth_mechanisms_and_pipelining(client_relay, sinks):
    t = client_relay.tenant
    for listener, tls, mech, pipeline in COMBOS:
        out = subprocess.run(
            [swaks, "--server", "127.0.0.1", "--port", str(client_relay.ports[listener]), tls,
             "--ehlo", "client.test", "--auth", mech, "--auth-user", t.username,
             "--auth-password", t.secret, "--from", t.sender, "--to", "user@example.test",
             "--header", "X-Helo-Tag: swaks", "--header", f"Subject: swaks {mech}",
             "--body", "hello from swaks", *(["--pipeline"] if pipeline else [])],
            capture_output=True, text=True, timeout=60)
        combo = (listener, mech, pipeline)
        assert out.returncode == 0, (combo, out.stdout + out.stderr)
        said = [line[3:].strip() for line in out.stdout.splitlines() if line.startswith("<~")]
        assert CATALOG["auth_ok"].line() in said, (combo, said)
        assert any(s.startswith("250-") or s.startswith("250 ") for s in said)
        if pipeline:
            assert any("PIPELINING" in s for s in said)
            assert CATALOG["sender_ok"].line() in said and CATALOG["recipient_ok"].line() in said
        queued = [m.group(1) for s in said if (m := QUEUED.fullmatch(s))]
        assert len(queued) == 1, (combo, said)
        assert said[-1] == CATALOG["bye"].line()
        got = arrived(sinks[0], queued[0])
        assert got["rcpt_tos"] == ["user@example.test"] and got["mail_from"] == t.sender
        assert b"X-Helo-Tag" not in got["data"] and b"hello from swaks" in got["data"]
        assert re.search(rb"^DKIM-Signature:", got["data"], re.M)
        assert client_relay.store.queue.load_message(queued[0]).tags == ["swaks"]
    record("client_swaks", combinations=len(COMBOS), delivered=len(COMBOS))
