"""`helo-smtp serve` start-up failures, as real processes: one ``Error:`` line naming the
setting, its value and what to do; nothing reported done before it is (no listener logged,
no dev credential printed, nothing created) when the start fails."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from helo_smtp.store import Store
from tests.ops.serveproc import HELO_SMTP, ServeProcess
from tests.support.configfile import write_config
from tests.support.relay import base_config


@pytest.fixture
def dev_config(tmp_path, dns_server, mx_port, server_cert):
    """``dev_config(**overrides)`` -> a config file for a first start with dev_bootstrap on."""

    def make(**overrides) -> Path:
        server = {"dev_bootstrap": True, **overrides.pop("server", {})}
        cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port,
                          cert=server_cert, server=server, **overrides)
        return write_config(tmp_path / "helo-smtp.toml", cfg)

    return make


def serve_fails(path: Path, cwd: Path, bound_smtp: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "HELO_SMTP_CONFIG")}
    p = subprocess.run([HELO_SMTP, "serve", "--config", str(path)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    errors = [x for x in p.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1, p.stderr
    assert "secret" not in p.stdout + p.stderr  # no credential for a relay that never ran
    assert "event=started" not in p.stderr and "READY" not in p.stderr
    # a listener is logged only once all of them are bound (the HTTP side comes after)
    assert ("event=listening" in p.stderr) == bound_smtp
    return errors[0]


def _listeners(port: int) -> list[dict[str, object]]:
    return [{"name": "submission", "address": "127.0.0.1", "port": 0, "tls": "starttls"},
            {"name": "broadcast", "address": "127.0.0.1", "port": port, "tls": "starttls",
             "mail_type": "broadcast"}]


def test_port_in_use_names_the_listener_and_its_key(dev_config, tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        path = dev_config(listeners=_listeners(port))
        line = serve_fails(path, tmp_path)
    assert f"listener 'broadcast' cannot listen on 127.0.0.1:{port}" in line
    assert "already in use" in line and f"port = {port}" in line
    assert '[[listeners]] "broadcast"' in line and str(path) in line
    store = Store.open(str(tmp_path / "relay.db"))
    try:
        assert store.accounts.list() == []  # the next start still creates and shows it
    finally:
        store.close()
    # With the port free, the same first start works and shows the credential once.
    proc = ServeProcess(path, tmp_path)
    try:
        proc.wait_ready()
        proc.wait_log(r"secret:")
        shown = proc.output
        assert shown.index("event=listening") < shown.index("secret:")
    finally:
        proc.close()


def test_http_port_in_use_names_http_listen(dev_config, tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        line = serve_fails(dev_config(http={"listen": f"127.0.0.1:{port}"}), tmp_path,
                           bound_smtp=True)
    assert f"the HTTP side cannot listen on 127.0.0.1:{port}" in line
    assert "http.listen" in line and "already in use" in line


@pytest.mark.parametrize("where", ["missing-dir", "is-a-directory", "under-a-file"])
def test_unusable_database_path_names_the_setting(dev_config, tmp_path, where):
    if where == "missing-dir":
        db = tmp_path / "nowhere" / "relay.db"
    elif where == "is-a-directory":
        db = tmp_path / "adir"
        db.mkdir()
    else:
        (tmp_path / "afile").write_text("x")
        db = tmp_path / "afile" / "relay.db"
    line = serve_fails(dev_config(server={"database": str(db)}), tmp_path)
    assert f'server.database = "{db}"' in line
    assert "restore from backup" not in line
    expect = {"missing-dir": "mkdir -p", "is-a-directory": "is a directory",
              "under-a-file": "is not a directory"}[where]
    assert expect in line


def test_a_file_that_is_no_database_says_restore(dev_config, tmp_path):
    db = tmp_path / "relay.db"
    db.write_bytes(b"this is not SQLite" * 100)
    line = serve_fails(dev_config(server={"database": str(db)}), tmp_path)
    assert str(db) in line and "restore from backup" in line


def test_an_unreadable_certificate_names_the_files_and_the_fix(dev_config, tmp_path,
                                                               server_cert):
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("garbage\n")
    line = serve_fails(dev_config(tls={"cert_file": str(bad), "key_file": server_cert[1]}),
                       tmp_path)
    assert f"cert_file '{bad}'" in line and "PEM certificate chain" in line
    assert "helo-smtp init" in line
