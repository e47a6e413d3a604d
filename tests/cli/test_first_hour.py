"""What a newcomer meets in the CLI (issue #21, item 7): a failure's reply shown whole in
tables, the meaning of a message's status, a purge that counts no attempt, and an ``init``
whose "Next:" commands run after the README's install (helo-smtp not on PATH)."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner

from helo_smtp import keys
from helo_smtp.models import BounceCategory, DeliveryResult, MailType, RecipientState
from tests.cli.conftest import CLI, config_data, enqueue, expect_error
from tests.ops.serveproc import HELO_SMTP
from tests.support.configfile import dumps
from tests.support.relay import make_tenant

LONG = ("4.7.1 Service unavailable; client host [192.0.2.7] blocked using "
        "zen.spamhaus.org; see https://check.spamhaus.org/query/ip/192.0.2.7 for the reason "
        "and how to be delisted, then try again in an hour")


def _defer_one(store) -> tuple[str, int]:
    t = make_tenant(store)
    mid = enqueue(store, t.account.id, t.channel.id, t.sender, ["a@example.test",
                                                                  "b@example.test"])
    rows = asyncio.run(store.queue.claim(MailType.TRANSACTIONAL, 10, "n", 60.0))
    first = next(r for r in rows if r.address == "a@example.test")
    asyncio.run(store.queue.record([DeliveryResult(
        first.id, RecipientState.DEFERRED, "rcpt", LONG, code=451, status="4.7.1",
        category=BounceCategory.SPAM_BLOCK, remote_host="mx1.example.test",
        next_attempt_at=time.time() + 600)]))
    other = next(r.id for r in rows if r.address == "b@example.test")
    asyncio.run(store.queue.release([other], time.time()))
    return mid, first.id


def _column_text(output: str, first_word: str) -> str:
    """The wrapped cell that starts with ``first_word``, its continuation lines joined."""
    lines = output.splitlines()
    start = next(i for i, x in enumerate(lines) if first_word in x)
    col = lines[start].index(first_word)
    parts = [lines[start][col:].split("   ")[0].strip()]
    for line in lines[start + 1:]:
        if line[:col].strip() or len(line) <= col:
            break
        parts.append(line[col:].split("   ")[0].strip())
    return " ".join(parts)


def test_failure_text_is_shown_whole_in_tables(cli: CLI, db_store):
    mid, _ = _defer_one(db_store)
    shown = cli.ok("messages", "show", mid).stdout
    assert "..." not in shown
    assert _column_text(shown.split("attempts:")[0], "4.7.1 Service") == LONG
    assert _column_text(shown.split("attempts:")[1], "4.7.1 Service") == LONG
    queued = cli.ok("queue", "list").stdout
    assert _column_text(queued, "4.7.1 Service") == LONG


def test_messages_show_explains_the_status(cli: CLI, db_store):
    mid, _ = _defer_one(db_store)
    shown = cli.ok("messages", "show", mid).stdout
    assert "delayed" in shown and "will be retried" in shown
    data = cli.json("messages", "show", mid)
    assert data["status"] == "delayed" and "deferred" in data["status_meaning"]


def test_purge_counts_no_attempt(cli: CLI, db_store):
    mid, _ = _defer_one(db_store)
    cli.ok("queue", "purge", mid, "--yes")
    rows = {r["address"]: r for r in cli.json("messages", "show", mid)["recipients_detail"]}
    assert (rows["a@example.test"]["state"], rows["a@example.test"]["attempts"]) == (
        "expired", 1)  # the one real attempt
    assert (rows["b@example.test"]["state"], rows["b@example.test"]["attempts"]) == (
        "expired", 0)  # never tried
    attempts = cli.json("messages", "show", mid)["attempts"]
    assert [a["address"] for a in attempts] == ["a@example.test"]
    assert cli.json("messages", "show", mid)["status"] == "failed"


def test_init_next_names_a_command_that_runs_after_the_readme_install(tmp_path, dns_server):
    (tmp_path / "helo-smtp.toml").write_text(dumps(config_data(tmp_path, dns_server.port)))
    env = {k: v for k, v in os.environ.items() if k not in ("HELO_SMTP_CONFIG", "VIRTUAL_ENV")}
    venv_bin = str(Path(HELO_SMTP).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != Path(venv_bin).resolve())
    rel = os.path.relpath(HELO_SMTP, tmp_path)  # as the README runs it: .venv/bin/helo-smtp
    done = subprocess.run([rel, "init", "--config", "helo-smtp.toml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    steps = done.stdout.split("Next:\n")[1].splitlines()
    assert steps and all(s.strip().startswith(rel + " ") for s in steps)
    check = subprocess.run(shlex.split(steps[0]), cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_domain_verification_stays_strict_in_dev_mode(cli: CLI, dns, db_store, tmp_path,
                                                      database):
    dev = tmp_path / "dev.toml"
    dev.write_text(dumps(config_data(tmp_path, dns.port, server={"database": database},
                                     dev={"inbox": True})))
    cli.ok("accounts", "create", "acme")
    cli.ok("domains", "add", "mine.test", "--account", "acme", "--bits", "1024")
    msg = expect_error(cli.run("--config", str(dev), "domains", "verify", "mine.test",
                               config=False))
    assert "not verified" in msg and "dev mode verifies no domain without DNS" in msg
    assert not db_store.domains.require("mine.test").verified
    token = db_store.domains.require("mine.test").verify_token
    dns.add("_helo.mine.test", "TXT", f'"{keys.VERIFY_PREFIX}{token}"')
    cli.ok("--config", str(dev), "domains", "verify", "mine.test", config=False)
    assert db_store.domains.require("mine.test").verified


def test_check_config_names_a_bad_relayhost_and_hides_its_password(tmp_path, dns_server):
    path = tmp_path / "relay.toml"
    data = config_data(tmp_path, dns_server.port)
    data["delivery"] = {"relayhost": "[smtp.example.net]:587", "relayhost_username": "u",
                        "relayhost_password": "hunter2", "routes": {"a.test": "[x"}}
    path.write_text(dumps(data))
    bad = CLI(path, tmp_path / "var" / "helo.db", CliRunner())
    line = bad.fail("check-config")
    assert "'delivery.routes.a.test'" in line and "[host]:port" in line
    data["delivery"]["routes"] = {"a.test": "[127.0.0.1]:1025"}
    path.write_text(dumps(data))
    rows = {r["key"]: r["value"] for r in bad.json("check-config")["settings"]}
    assert rows["delivery.relayhost_password"] == "********"
    assert rows["delivery.routes.a.test"] == "[127.0.0.1]:1025"
    assert "hunter2" not in bad.ok("check-config").stdout


def test_init_on_an_unusable_database_path_names_the_setting(tmp_path, dns_server):
    (tmp_path / "afile").write_text("x")
    path = tmp_path / "relay.toml"
    data = config_data(tmp_path, dns_server.port,
                       server={"database": str(tmp_path / "afile" / "sub" / "helo.db")})
    path.write_text(dumps(data))
    line = CLI(path, tmp_path / "unused.db", CliRunner()).fail("init")
    assert f'server.database = "{tmp_path}/afile/sub/helo.db"' in line
    assert "a file is in the way" in line and "restore from backup" not in line
