"""Fixtures for the CLI tests: a config file and a migrated database in tmp_path, and a runner
that invokes the real click group in-process (CliRunner) and checks the error contract."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helo_smtp import store as store_mod
from helo_smtp.cli.main import cli as cli_group
from helo_smtp.models import NewMessage, uuid7
from helo_smtp.store import Store
from tests.support.configfile import dumps


def config_data(tmp: Path, dns_port: int, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server": {"hostname": "relay.test", "database": str(tmp / "var" / "helo.db")},
        "tls": {"cert_file": str(tmp / "var" / "tls" / "cert.pem"),
                "key_file": str(tmp / "var" / "tls" / "key.pem")},
        "listeners": [{"name": "submission", "address": "127.0.0.1", "port": 0}],
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 1.0},
        "http": {"listen": ""},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


@dataclass
class CLI:
    """``run`` invokes ``helo-smtp --config <file> ARGS`` in-process."""

    config: Path
    db: Path
    runner: CliRunner

    def run(self, *args: str, input: str | None = None, config: bool = True,
            env: dict[str, str] | None = None) -> Result:
        argv = (["--config", str(self.config)] if config else []) + list(args)
        return self.runner.invoke(cli_group, argv, input=input, env=env)

    def ok(self, *args: str, **kw: Any) -> Result:
        res = self.run(*args, **kw)
        assert res.exit_code == 0, (res.exit_code, res.output, res.exception)
        return res

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def fail(self, *args: str, code: int | None = None, **kw: Any) -> str:
        """Run, expect a non-zero exit with exactly one 'Error:' line and no traceback."""
        res = self.run(*args, **kw)
        return expect_error(res, code)


def expect_error(res: Result, code: int | None = None) -> str:
    assert res.exit_code != 0, res.output
    if code is not None:
        assert res.exit_code == code, (res.exit_code, res.output)
    assert isinstance(res.exception, SystemExit), res.exception  # not a crash
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    return errors[0]


@pytest.fixture
def database(tmp_path, backend, request) -> str:
    """The database the CLI's config names: a SQLite file in tmp_path (not created), or a
    fresh migrated PostgreSQL database when the test runs on the ``postgresql`` backend."""
    if backend == "postgresql":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "var" / "helo.db")


@pytest.fixture
def cli_config(tmp_path, dns_server, database) -> Path:
    """A config file in tmp_path."""
    path = tmp_path / "helo-smtp.toml"
    data = config_data(tmp_path, dns_server.port, server={"database": database})
    path.write_text(dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def cli(cli_config, database) -> CLI:
    """A CLI on a config whose database exists and is migrated."""
    if not database.startswith("postgresql"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    store_mod.migrate(database)
    return CLI(cli_config, Path(database), CliRunner())


@pytest.fixture
def bare_cli(tmp_path, dns_server) -> CLI:
    """A CLI on a config whose SQLite database and certificate do not exist yet (whatever
    the backend: init and migrate create files)."""
    path = tmp_path / "helo-smtp.toml"
    path.write_text(dumps(config_data(tmp_path, dns_server.port)), encoding="utf-8")
    return CLI(path, tmp_path / "var" / "helo.db", CliRunner())


@pytest.fixture
def db_store(cli, database):
    """The test's own Store on the CLI's database (reads see what the CLI committed)."""
    s = Store.open(database, check=False)
    yield s
    s.close()


def enqueue(store: Store, account_id: str, channel_id: str, sender: str,
            recipients: list[str], subject: str = "Hello", mail_type: str = "transactional",
            broadcast: str | None = None, suppressed: list[str] | None = None) -> str:
    """Commit one message through the real queue; returns its id."""
    from helo_smtp.models import MailType

    mid = uuid7()
    raw = (f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{mid}@relay.test>\r\n\r\nbody\r\n").encode()
    msg = NewMessage(id=mid, account_id=account_id, channel_id=channel_id,
                     mail_type=MailType(mail_type), sender=sender, recipients=recipients,
                     suppressed=suppressed or [], raw=raw, subject=subject,
                     broadcast_key=f"name:{broadcast}" if broadcast else None,
                     broadcast_name=broadcast, reply=f"250 2.0.0 Ok: queued as {mid}")
    asyncio.run(store.queue.enqueue(msg))
    return mid
