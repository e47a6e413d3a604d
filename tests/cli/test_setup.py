"""init, migrate, check-config, the --config / $HELO_SMTP_CONFIG rules and the shipped configs."""

from __future__ import annotations

import os
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cryptography import x509

from helo_smtp import config
from helo_smtp.cli.docsgen import EXAMPLE_OVERRIDES, example_values
from helo_smtp.cli.main import cli as cli_group
from helo_smtp.store import pg_schema, schema
from tests.cli.conftest import CLI, expect_error

ROOT = Path(__file__).resolve().parents[2]
STEPS = [name for name, _ in pg_schema.MIGRATIONS]  # every migration step, in order


def test_init_creates_database_and_a_certificate_that_ssl_loads(bare_cli: CLI, tmp_path):
    out = bare_cli.json("init")
    db, cert, key = (tmp_path / "var" / "helo.db", tmp_path / "var" / "tls" / "cert.pem",
                     tmp_path / "var" / "tls" / "key.pem")
    assert out["database"] == {"path": str(db), "created": True, "migrations": STEPS}
    assert out["tls"]["created"] is True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))  # raises if the pair does not match
    assert key.stat().st_mode & 0o777 == 0o600
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["relay.test", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    conn = sqlite3.connect(db)
    assert schema.applied(conn) == STEPS
    conn.close()
    assert any("serve" in step for step in out["next"])


def test_init_is_idempotent_and_never_overwrites(bare_cli: CLI, tmp_path):
    bare_cli.ok("init")
    cert = tmp_path / "var" / "tls" / "cert.pem"
    before = cert.read_bytes()
    (tmp_path / "var" / "helo.db").stat()
    again = bare_cli.json("init")
    assert again["database"]["created"] is False and again["database"]["migrations"] == []
    assert again["tls"]["created"] is False
    assert cert.read_bytes() == before
    human = bare_cli.ok("init").stdout
    assert "exists, kept" in human and "Next:" in human


def test_init_refuses_a_lone_certificate_without_touching_it(bare_cli: CLI, tmp_path):
    cert = tmp_path / "var" / "tls" / "cert.pem"
    cert.parent.mkdir(parents=True)
    cert.write_text("operator's certificate")
    msg = bare_cli.fail("init")
    assert "key.pem does not" in msg
    assert cert.read_text() == "operator's certificate"


def test_init_without_a_config_points_at_the_example(bare_cli: CLI, tmp_path):
    missing = tmp_path / "nope.toml"
    res = bare_cli.runner.invoke(cli_group, ["init", "--config", str(missing)])
    msg = expect_error(res)
    assert str(missing) in msg and "config/helo-smtp.example.toml" in msg
    assert not (tmp_path / "var").exists()


def test_init_uses_helo_smtp_config_from_the_environment(bare_cli: CLI, tmp_path):
    res = bare_cli.run("init", "--json", config=False,
                       env={"HELO_SMTP_CONFIG": str(bare_cli.config)})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "var" / "helo.db").exists()


def test_default_config_path_is_config_helo_smtp_toml(bare_cli: CLI, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = expect_error(bare_cli.run("accounts", "list", config=False,
                                    env={"HELO_SMTP_CONFIG": None}))
    assert "config/helo-smtp.toml" in msg


def test_config_option_is_accepted_after_the_command(cli: CLI):
    res = cli.runner.invoke(cli_group, ["accounts", "create", "late", "--config",
                                        str(cli.config), "--json"])
    assert res.exit_code == 0, res.output
    assert '"name": "late"' in res.stdout


def test_commands_other_than_init_need_the_database(bare_cli: CLI, tmp_path):
    msg = bare_cli.fail("accounts", "list")
    assert "run 'helo-smtp init'" in msg
    assert not (tmp_path / "var" / "helo.db").exists()


def test_migrate_from_an_empty_file_then_again(bare_cli: CLI, tmp_path):
    db = tmp_path / "var" / "helo.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    first = bare_cli.json("migrate")
    assert first["applied"] == STEPS
    assert first["steps"] == [{"step": step, "status": "applied now"} for step in STEPS]
    second = bare_cli.json("migrate")
    assert second["applied"] == []
    assert second["steps"] == [{"step": step, "status": "already applied"} for step in STEPS]
    assert "schema is up to date" in bare_cli.ok("migrate").stdout


def test_migrate_refuses_a_file_that_is_not_a_database(bare_cli: CLI, tmp_path):
    db = tmp_path / "var" / "helo.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    msg = bare_cli.fail("migrate")
    assert str(db) in msg and "restore from backup" in msg


def test_check_config_prints_effective_settings(cli: CLI):
    out = cli.json("check-config")
    rows = {r["key"]: r for r in out["settings"]}
    assert rows["server.hostname"] == {"key": "server.hostname", "value": "relay.test",
                                       "origin": "file"}
    assert rows["limits.max_recipients"]["origin"] == "default"
    assert rows["limits.max_recipients"]["value"] == 50
    assert rows["listeners[0].port"]["value"] == 0
    assert out["file"] == str(cli.config)
    table = cli.ok("check-config").stdout
    assert "server.hostname" in table and "relay.test" in table


@pytest.mark.parametrize(("extra", "key"), [
    ('[server]\nhostnam = "x"\n', "server.hostnam"),
    ('[limits]\nmax_connections = "many"\n', "limits.max_connections"),
    ('[[listeners]]\ntls = "ssl"\n', "listeners[0].tls"),
    ('[logging]\nlevel = "LOUD"\n', "logging.level"),
    ('[[listeners]]\nport = 70000\n', "listeners[0].port"),
    ('[dns]\nnameservers = ["dns.example"]\n', "dns.nameservers[0]"),
    ('[http]\nlisten = "8025"\n', "http.listen"),
])
def test_check_config_errors_name_the_key_and_the_file(cli: CLI, tmp_path, extra, key):
    bad = tmp_path / "bad.toml"
    bad.write_text(extra)
    msg = expect_error(cli.runner.invoke(cli_group, ["check-config", "--config", str(bad)]))
    assert str(bad) in msg and f"'{key}'" in msg


def test_check_config_missing_file_and_bad_toml(cli: CLI, tmp_path):
    missing = tmp_path / "missing.toml"
    msg = expect_error(cli.runner.invoke(cli_group, ["check-config", "--config", str(missing)]))
    assert str(missing) in msg and "no such config file" in msg
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    msg = expect_error(cli.runner.invoke(cli_group, ["check-config", "--config", str(broken)]))
    assert str(broken) in msg and "not valid TOML" in msg


def test_check_config_warns_about_missing_tls_files(cli: CLI):
    res = cli.ok("check-config")
    assert "tls.cert_file" in res.stderr and "helo-smtp init" in res.stderr


def test_example_config_parses_and_sets_every_declared_key():
    path = ROOT / "config" / "helo-smtp.example.toml"
    cfg = config.load(path)
    got = config.to_dict(cfg)
    got.pop("source")
    assert got == example_values()
    assert cfg.server.hostname == EXAMPLE_OVERRIDES["server.hostname"]
    assert [(x.port, x.tls, x.mail_type) for x in cfg.listeners] == [
        (587, "starttls", "header"), (465, "implicit", "header"), (2587, "starttls", "broadcast")]
    import tomllib

    raw = tomllib.loads(path.read_text())
    for key, *_ in config.settings_table():
        if key.startswith("[[listeners]]."):
            assert all(key.split(".", 1)[1] in item for item in raw["listeners"]), key
            continue
        node = raw
        for part in key.split("."):
            assert part in node, f"{key} missing from the example config"
            node = node[part]
    text = path.read_text()
    for _, _, _, help_text in config.settings_table():
        assert f"# {help_text}" in text


def test_dev_config_matches_the_documented_development_setup():
    cfg = config.load(ROOT / "config" / "dev.toml")
    assert cfg.server.hostname == "localhost" and cfg.server.dev_bootstrap is True
    assert cfg.server.database == "var/helo-smtp.db"
    assert (cfg.tls.cert_file, cfg.tls.key_file) == ("var/tls/cert.pem", "var/tls/key.pem")
    assert [(x.name, x.address, x.port, x.tls, x.mail_type) for x in cfg.listeners] == [
        ("submission", "127.0.0.1", 2525, "starttls", "header"),
        ("submissions", "127.0.0.1", 4465, "implicit", "header"),
        ("broadcast", "127.0.0.1", 2587, "starttls", "broadcast")]
    assert (cfg.http.listen, cfg.http.public_url) == ("127.0.0.1:8025", "http://127.0.0.1:8025")
    assert cfg.dns.nameservers == [] and cfg.delivery.port == 25


def _leaf_commands(group: click.Group, prefix: str = "helo-smtp"):
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            yield from _leaf_commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def test_every_command_has_an_example_and_the_common_options(cli: CLI):
    leaves = list(_leaf_commands(cli_group))
    assert len(leaves) >= 35
    for path, cmd in leaves:
        res = cli.runner.invoke(cli_group, [*path.split()[1:], "--help"])
        assert res.exit_code == 0, path
        assert "Example:" in res.stdout, path
        assert "helo-smtp " in res.stdout.split("Example:", 1)[1].split("Options:")[0], path
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"--config", "--json"} <= opts, path


def test_click_usage_errors_are_one_line(cli: CLI):
    msg = cli.fail("accounts", "set-status", "x", "sleeping", code=2)
    assert "sleeping" in msg and "accounts set-status --help" in msg
    cli.fail("channels", "create", "--name", "x", code=2)  # missing --account
    cli.fail("no-such-command", code=2)


def test_installed_console_script_reports_bad_input_in_one_line(cli: CLI):
    script = Path(sys.executable).with_name("helo-smtp")
    assert script.exists()
    env = {**os.environ, "HELO_SMTP_CONFIG": str(cli.config)}
    ok = subprocess.run([str(script), "accounts", "create", "sub", "--json"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    dup = subprocess.run([str(script), "accounts", "create", "sub"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert dup.returncode == 1
    assert dup.stderr == "Error: account 'sub' already exists\n"
    assert dup.stdout == ""


def test_a_group_without_a_command_prints_its_menu(cli: CLI):
    res = cli.runner.invoke(cli_group, ["queue"])
    assert res.exit_code == 0
    assert "Commands:" in res.stdout and "purge" in res.stdout and res.stderr == ""
    assert "--version" in cli.runner.invoke(cli_group, []).stdout
