"""The bounces listener takes mail without AUTH, so it is where an open relay would hide:
nmap's smtp-open-relay script (16 relay tricks: percent hack, source routes, quoted local
parts, address literals) finds none."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.events.conftest import BOUNCE_DOMAIN

nmap = shutil.which("nmap")


@pytest.mark.skipif(nmap is None, reason="nmap is not installed (tests/run.sh installs it)")
def test_nmap_finds_no_open_relay_on_the_bounces_listener(bounce_relay, sinks):
    relay = bounce_relay()
    port = relay.ports["bounces"]
    out = subprocess.run(
        [nmap, "-Pn", "-n", "-sT", "-p", str(port), "--script", "+smtp-open-relay",
         "--script-args", f"smtp-open-relay.domain={BOUNCE_DOMAIN},smtp-open-relay.ip="
         "127.0.0.1,smtp-open-relay.from=mailer-daemon@remote.test,"
         "smtp-open-relay.to=victim@elsewhere.test", "127.0.0.1"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"smtp-open-relay: Server (isn't|doesn't seem to be) an open relay",
                     out.stdout), out.stdout
    assert "Server is an open relay" not in out.stdout
    assert relay.store.queue.accounting() == {}
    assert sinks[0].h.messages == [] and sinks[2].h.messages == []
