"""The systemd unit: it verifies, it scores <= 2.0 on `systemd-analyze security`, it says what
the relay needs (Type=notify, watchdog, drain time), and sysusers/tmpfiles make the user and the
directories."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helo_smtp.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "helo-smtp.service"
SYSUSERS = ROOT / "systemd" / "helo-smtp.sysusers"
TMPFILES = ROOT / "systemd" / "helo-smtp.tmpfiles"
VENV_SCRIPT = Path(sys.executable).parent / "helo-smtp"
MAX_EXPOSURE = 2.0


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian/Ubuntu package 'systemd')")
    return path


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.fixture
def local_unit(tmp_path) -> Path:
    """The unit with ExecStart pointing at this venv's script: verify checks that it exists."""
    assert VENV_SCRIPT.exists(), "pip install -e . should have created the helo-smtp script"
    text = UNIT.read_text().replace("ExecStart=/usr/bin/helo-smtp ", f"ExecStart={VENV_SCRIPT} ")
    assert str(VENV_SCRIPT) in text
    path = tmp_path / "helo-smtp.service"
    path.write_text(text)
    return path


def test_unit_verifies_without_warnings(local_unit):
    analyze = need("systemd-analyze")
    p = subprocess.run([analyze, "verify", str(local_unit)], capture_output=True, text=True,
                       timeout=60)
    complaints = [line for line in (p.stdout + p.stderr).splitlines()
                  if "helo-smtp" in line or str(local_unit) in line]
    assert p.returncode == 0, p.stderr
    assert complaints == []  # unknown keys and bad values are only warnings: none allowed


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a missing ExecStart binary makes verify exit non-zero."""
    analyze = need("systemd-analyze")
    broken = tmp_path / "helo-smtp.service"
    broken.write_text(UNIT.read_text().replace("/usr/bin/helo-smtp", str(tmp_path / "nope")))
    p = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and "nope" in p.stderr


def test_security_exposure_is_at_most_2(local_unit):
    analyze = need("systemd-analyze")
    p = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(local_unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, p.stdout
    documented = re.search(r"exposure level (\d+\.\d+)", (ROOT / "docs" /
                                                         "operations.md").read_text())
    assert documented and float(documented.group(1)) <= MAX_EXPOSURE


def test_unit_declares_what_the_relay_relies_on():
    s = unit_settings(UNIT.read_text())
    one = {k: v[-1] for k, v in s.items()}
    assert one["Service.Type"] == "notify" and one["Service.NotifyAccess"] == "main"
    assert one["Service.ExecStart"] == (
        "/usr/bin/helo-smtp serve --config /etc/helo-smtp/helo-smtp.toml")
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert (one["Service.User"], one["Service.StateDirectory"],
            one["Service.ConfigurationDirectory"]) == ("helo-smtp", "helo-smtp", "helo-smtp")
    assert one["Service.AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert one["Service.CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert one["Service.RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert s["Service.SystemCallFilter"][0] == "@system-service"
    for flag in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                 "MemoryDenyWriteExecute", "LockPersonality", "RestrictSUIDSGID"):
        assert one[f"Service.{flag}"] == "yes", flag
    assert one["Service.ProtectSystem"] == "strict" and one["Service.UMask"] == "0077"
    # Outbound SMTP goes to any address: an IP allow list would break delivery.
    assert "Service.IPAddressDeny" not in s
    # The watchdog is pinged at half the interval; stop must outlast the drain.
    assert int(one["Service.WatchdogSec"]) == 60
    assert int(one["Service.TimeoutStopSec"]) >= ServerConfig().shutdown_grace + 30
    assert one["Service.LimitNOFILE"] == "65536" and one["Service.Restart"] == "on-failure"


def test_sysusers_and_tmpfiles_make_the_user_and_directories(tmp_path):
    sysusers, tmpfiles = need("systemd-sysusers"), need("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles --root needs root to chown the directories it creates")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for cmd, conf in (([sysusers, f"--root={root}", "-"], SYSUSERS),
                      ([tmpfiles, "--create", f"--root={root}", "-"], TMPFILES)):
        p = subprocess.run(cmd, input=conf.read_text(), capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
    entry = next(line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()
                 if line.startswith("helo-smtp:"))
    uid, gid, home, shell = int(entry[2]), int(entry[3]), entry[5], entry[6]
    assert uid < 1000 and home == "/var/lib/helo-smtp" and shell.endswith("nologin")
    etc, state = os.stat(root / "etc" / "helo-smtp"), os.stat(root / "var" / "lib" / "helo-smtp")
    assert (stat.S_IMODE(etc.st_mode), etc.st_uid, etc.st_gid) == (0o750, 0, gid)
    assert (stat.S_IMODE(state.st_mode), state.st_uid, state.st_gid) == (0o700, uid, gid)
