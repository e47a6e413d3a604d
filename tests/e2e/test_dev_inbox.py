"""Dev mode (SPEC §15): with ``[dev] inbox = true`` every recipient, on any domain, goes to the
built-in catch-all inbox through a real SMTP session, signed and with tracking applied, and
the real ``helo-smtp dev inbox`` CLI lists and shows it. Nothing reaches an MX host."""

from __future__ import annotations

import json
import os
import subprocess

from tests.ops.serveproc import HELO_SMTP
from tests.support.configfile import write_config

HTML = '<p>Welcome! <a href="https://example.com/start">Get started</a></p>'


def cli(config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HELO_SMTP_CONFIG"}
    return subprocess.run([HELO_SMTP, *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=env)


def test_dev_inbox_catches_everything_and_the_cli_shows_it(scenario, sinks, tmp_path):
    inbox = tmp_path / "dev-inbox"
    sc = scenario(dev={"inbox": True, "inbox_dir": str(inbox)},
                  delivery={"relayhost": "[192.0.2.1]:25"})  # dev mode wins over relayhost
    mid = sc.submit(["ann@example.test", "bob@nowhere.invalid"], html=HTML,
                    headers={"X-Helo-Track-Links": "true", "X-Helo-Tag": "welcome"})
    sc.wait(mid, delivered=2)
    assert not any(s.h.messages for s in sinks)
    assert {a["remote_ip"] for a in sc.attempts(mid)} == {"127.0.0.1"}
    config = write_config(tmp_path / "cli.toml", sc.relay.cfg)

    listed = cli(config, "dev", "inbox", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    # tracked links: one copy per recipient, the first with the messageId of the 250 reply
    assert sorted(r["id"] for r in rows) == [mid, f"{mid}-2"]
    assert sorted(r["recipients"][0] for r in rows) == ["ann@example.test",
                                                         "bob@nowhere.invalid"]
    assert all(r["dkim_signed"] and r["subject"] == "hello" for r in rows)

    table = cli(config, "dev", "inbox")
    assert table.returncode == 0 and mid in table.stdout and "DKIM" in table.stdout

    shown = cli(config, "dev", "inbox", "show", mid)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Return-Path: <app@sender.test>\nDelivered-To: ")
    assert "DKIM-Signature: v=1;" in shown.stdout
    assert "X-Helo-" not in shown.stdout  # control headers never leave the relay
    assert "http://127.0.0.1:8025/c/" in shown.stdout  # the link points at the click tracker
    assert 'href="https://example.com/start"' not in shown.stdout

    # Nothing bounced, so nothing is suppressed: the same message again is delivered too.
    again = sc.submit(["ann@example.test"], html=HTML)
    sc.wait(again, delivered=1)
    assert sc.store.suppressions.list(sc.relay.tenant.channel.id) == []

    missing = cli(config, "dev", "inbox", "show", "no-such-id")
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: no message 'no-such-id' in the dev inbox")

    cleared = cli(config, "dev", "inbox", "clear")
    assert cleared.returncode == 0 and "deleted 3 message(s)" in cleared.stdout
    assert json.loads(cli(config, "dev", "inbox", "--json").stdout) == []
