"""Legacy clients, each with what exposed its problem (issue #21, item 8): messages with bare-LF
line ends longer than 1000 octets (curl without ``--crlf``, ``smtplib.sendmail()`` given bytes,
swaks sending a file as it is, a hand-written socket script) are accepted and arrive with CRLF
line ends, their dot lines intact, a ``Date:`` added when missing, over-long lines folded;
``AUTH login`` in any case is accepted.
"""

from __future__ import annotations

import base64
import re
import shutil
import smtplib
import subprocess

import pytest

from helo_smtp.errors import CATALOG
from tests.clients.conftest import QUEUED, arrived
from tests.inbound.clients import Raw, accepted
from tests.reliability.roundtrip import body_of, only_crlf

curl = shutil.which("curl")
swaks = shutil.which("swaks")

# Longer than 1000 octets, LF only, with the lines that dot-stuffing is about.
LINES = [f"line {i:02d} " + "x" * 70 for i in range(40)]
BODY = "\n".join([*LINES[:20], ".dot line", "..two dots", *LINES[20:], ""])


def lf_message(sender: str, subject: str) -> bytes:
    return (f"From: {sender}\nTo: user@example.test\nSubject: {subject}\n\n{BODY}").encode()


def crlf_body() -> bytes:
    return BODY.replace("\n", "\r\n").encode()


def _delivered(sink, message_id: str) -> bytes:
    data = arrived(sink, message_id)["data"]
    assert only_crlf(data), data
    head = data.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"^Date: \w{3}, \d", head, re.M), head  # added (RFC 5322 §3.6)
    assert re.search(rb"^DKIM-Signature:", head, re.M)
    return body_of(data)


@pytest.fixture
def ca_file(ca, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_curl_uploads_an_lf_file_with_and_without_crlf(client_relay, sinks, ca_file, tmp_path,
                                                       crlf):
    if curl is None:
        pytest.skip("curl is not installed (tests/run.sh installs it)")
    t = client_relay.tenant
    eml = tmp_path / "message.eml"
    eml.write_bytes(lf_message(t.sender, "curl"))
    # implicit TLS without --crlf, STARTTLS and AUTH LOGIN with it
    url = (f"smtp://127.0.0.1:{client_relay.ports['submission']}/client.test" if crlf else
           f"smtps://127.0.0.1:{client_relay.ports['submissions']}/client.test")
    out = subprocess.run(
        [curl, "-sS", "-v", "--url", url, "--cacert", ca_file, "--ssl-reqd",
         "--user", f"{t.username}:{t.secret}", "--mail-from", t.sender,
         "--mail-rcpt", "user@example.test", "--upload-file", str(eml),
         *(["--crlf", "--login-options", "AUTH=LOGIN"] if crlf else [])],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    queued = QUEUED.findall(out.stderr)
    assert len(queued) == 1, out.stderr
    expected = crlf_body()
    if not crlf:  # sent unstuffed: after a bare LF a doubled leading dot loses one
        expected = expected.replace(b"\r\n..two dots", b"\r\n.two dots")
    # curl ends a file that does not end in CRLF with CRLF.CRLF: one empty line more
    assert _delivered(sinks[0], queued[0]) == expected + (b"" if crlf else b"\r\n")


def test_smtplib_sendmail_with_lf_bytes(client_relay, sinks, client_ctx):
    t = client_relay.tenant
    with smtplib.SMTP_SSL("127.0.0.1", client_relay.ports["submissions"], context=client_ctx,
                          timeout=30) as s:
        s.ehlo("client.test")
        s.login(t.username, t.secret)
        # sendmail() converts line ends in a str, not in bytes; it stuffs dots after any LF
        assert s.sendmail(t.sender, ["user@example.test"], lf_message(t.sender, "smtplib")) == {}
    mids = [m["id"] for m in client_relay.store.admin.messages(limit=10)]
    assert len(mids) == 1
    assert _delivered(sinks[0], mids[0]) == crlf_body() + b"\r\n"  # smtplib adds a CRLF


def test_swaks_sends_an_lf_file_as_it_is(client_relay, sinks, tmp_path):
    if swaks is None:
        pytest.skip("swaks is not installed (tests/run.sh installs it)")
    t = client_relay.tenant
    eml = tmp_path / "message.eml"
    eml.write_bytes(lf_message(t.sender, "swaks") + b"\r\n.\r\n")
    out = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(client_relay.ports["submissions"]),
         "--tls-on-connect", "--ehlo", "client.test", "--auth", "PLAIN",
         "--auth-user", t.username, "--auth-password", t.secret, "--from", t.sender,
         "--to", "user@example.test", "--data", f"@{eml}", "--no-data-fixup"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    queued = [m.group(1) for line in out.stdout.splitlines()
              if (m := QUEUED.fullmatch(line[3:].strip()))]
    assert len(queued) == 1, out.stdout
    # sent unstuffed: after a bare LF a single leading dot stays, a doubled one loses one
    expected = crlf_body().replace(b"\r\n..two dots", b"\r\n.two dots")
    assert _delivered(sinks[0], queued[0]) == expected + b"\r\n"


def test_hand_written_socket_script_auth_in_any_case_and_a_long_line(client_relay, sinks,
                                                                     client_ctx):
    t = client_relay.tenant
    raw = Raw(client_relay.ports["submissions"], client_ctx)
    assert raw.reply().startswith("220 ")
    raw.cmd("EHLO client.test")
    assert raw.cmd("AUTH login").startswith("334 ")
    assert raw.cmd(base64.b64encode(t.username.encode()).decode()).startswith("334 ")
    assert raw.cmd(base64.b64encode(t.secret.encode()).decode()) == CATALOG["auth_ok"].line()
    long_line = " ".join(["word"] * 400)  # 1999 octets: folded before a space
    message = lf_message(t.sender, "script") + long_line.encode() + b"\n"
    assert raw.cmd(f"MAIL FROM:<{t.sender}>") == CATALOG["sender_ok"].line()
    assert raw.cmd("RCPT TO:<user@example.test>") == CATALOG["recipient_ok"].line()
    assert raw.cmd("DATA").startswith("354 ")
    raw.send(message + b".\r\n")  # a script's idea of the end: "\n.\r\n" is not one
    raw.send(b"\r\n.\r\n")
    mid = accepted(raw.reply())
    body = _delivered(sinks[0], mid)
    assert max(map(len, body.split(b"\r\n"))) <= 998  # RFC 5321 §4.5.3.1.6
    assert body.replace(b"\r\n ", b" ") == (crlf_body().replace(b"\r\n..two", b"\r\n.two")
                                            + long_line.encode() + b"\r\n.\r\n\r\n")
    raw2 = Raw(client_relay.ports["submissions"], client_ctx)
    assert raw2.reply().startswith("220 ")
    raw2.cmd("EHLO client.test")
    token = base64.b64encode(f"\0{t.username}\0{t.secret}".encode()).decode()
    assert raw2.cmd(f"AUTH pLaIn {token}") == CATALOG["auth_ok"].line()
