"""nodemailer (npm), the mailer most Node.js applications use: STARTTLS on 587 with AUTH LOGIN
and implicit TLS on 465 with AUTH PLAIN, certificates verified against the test CA, an
attachment; each gets the documented ``250 2.0.0 Ok: queued as <id>`` and the mail arrives.

The package is installed from tests/clients/node/package-lock.json (``npm ci``, which
tests/run.sh runs); when it is missing the test installs it itself. If that fails it is
skipped on a developer machine; in CI the skip fails the run (tests/support/noskip.py).
"""

from __future__ import annotations

import base64
import email
import fcntl
import json
import shutil
import subprocess
from email import policy
from pathlib import Path

import pytest

from tests.clients.conftest import QUEUED, arrived
from tests.support.figures import record

NODE_DIR = Path(__file__).parent / "node"
ATTACHMENT = bytes(range(256)) * 16


def _missing(why: str) -> None:
    pytest.skip(f"nodemailer unavailable: {why}")


@pytest.fixture(scope="session")
def nodemailer() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        _missing("node is not installed")
    if not (NODE_DIR / "node_modules" / "nodemailer").is_dir():
        if npm is None:
            _missing("npm is not installed")
        with open(NODE_DIR / "package.json") as lock:  # one installer across xdist workers
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (NODE_DIR / "node_modules" / "nodemailer").is_dir():
                out = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix",
                                      str(NODE_DIR)], capture_output=True, text=True,
                                     timeout=300)
                if out.returncode != 0:
                    _missing(f"npm ci failed: {out.stderr[-2000:]}")
    return Path(node)


def test_nodemailer_587_login_and_465_plain(nodemailer, client_relay, sinks, ca, tmp_path):
    t = client_relay.tenant
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    for listener, secure, method in (("submission", False, "LOGIN"),
                                     ("submissions", True, "PLAIN")):
        opts = {"host": "127.0.0.1", "port": client_relay.ports[listener], "secure": secure,
                "user": t.username, "pass": t.secret, "method": method, "ca": str(ca_file),
                "from": f"App <{t.sender}>", "to": "user@example.test",
                "subject": f"nodemailer {method}", "text": "Hello from node.\n.\nBye.\n",
                "html": "<p>Hello from <b>node</b></p>",
                "attachments": [{"filename": "data.bin",
                                 "base64": base64.b64encode(ATTACHMENT).decode()}]}
        out = subprocess.run([str(nodemailer), str(NODE_DIR / "send.mjs"), json.dumps(opts)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (listener, out.stdout, out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        m = QUEUED.fullmatch(result["response"])
        assert m, result
        assert result["accepted"] == ["user@example.test"] and result["rejected"] == []
        got = arrived(sinks[0], m.group(1))
        parsed = email.message_from_bytes(got["data"], policy=policy.default)
        assert parsed["Subject"] == f"nodemailer {method}" and parsed["X-Helo-Tag"] is None
        [att] = list(parsed.iter_attachments())
        assert att.get_filename() == "data.bin" and att.get_payload(decode=True) == ATTACHMENT
        assert b"node-client.test" in got["data"]  # its EHLO name, in our Received line
    record("client_nodemailer", messages=2, delivered=2)
