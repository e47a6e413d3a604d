"""A private Postfix instance set up the way many legacy servers send through a smarthost:
``relayhost`` = helo-smtp, SASL from a ``hash:`` password map, TLS required.

    pf = PostfixClient(relay_port=..., username=..., secret=...)   # started
    pf.port                       # its own smtpd on 127.0.0.1 (a high port)
    pf.log()                      # its maillog
    pf.stop()

Everything lives in one directory under /tmp (``postfix -c DIR``: its own main.cf, master.cf,
queue_directory and data_directory); nothing touches /etc/postfix or port 25. Postfix must run
as root (it drops to the ``postfix`` user itself); DNS is off (``smtp_dns_support_level =
disabled``): the relayhost is a literal address.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.postfixmaster import master_cf
from tests.support.waiting import wait_for

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"



def available() -> str | None:
    """None when a private Postfix can run here, else why not."""
    if not (os.access(POSTFIX, os.X_OK) and os.access(POSTMAP, os.X_OK)):
        return "postfix is not installed (tests/run.sh installs it)"
    if os.geteuid() != 0:
        return "postfix must be started as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostfixClient:
    def __init__(self, relay_port: int, username: str, secret: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pfx-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self._write_config(relay_port, username, secret)
        (self.dir / "queue").mkdir(mode=0o755)  # root-owned; postfix makes what is inside
        self._run("check")
        self._run("start")
        wait_for(self._listening, timeout=20, what=f"postfix smtpd on {self.port}\n{self.log()}")

    def _write_config(self, relay_port: int, username: str, secret: str) -> None:
        d = self.dir
        relayhost = f"[127.0.0.1]:{relay_port}"
        main = {
            "compatibility_level": "3.6",
            "queue_directory": f"{d}/queue", "data_directory": f"{d}/data",
            "maillog_file": f"{d}/maillog", "maillog_file_prefixes": str(d),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4", "myhostname": "legacy.test", "mydomain": "legacy.test",
            "myorigin": "$mydomain", "mydestination": "", "mynetworks": "127.0.0.0/8",
            "alias_maps": "", "alias_database": "", "local_recipient_maps": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": relayhost, "smtp_dns_support_level": "disabled",
            "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_password_maps": f"hash:{d}/sasl_passwd",
            "smtp_sasl_security_options": "noanonymous",
            "smtp_sasl_tls_security_options": "noanonymous",
            "smtp_sasl_mechanism_filter": "plain, login",
            "smtp_tls_security_level": "encrypt", "smtp_tls_loglevel": "1",
            "smtp_connect_timeout": "10s", "queue_run_delay": "1s",
            "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
        }
        (d / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (d / "master.cf").write_text(master_cf(f"127.0.0.1:{self.port}"))
        (d / "sasl_passwd").write_text(f"{relayhost} {username}:{secret}\n")
        (d / "sasl_passwd").chmod(0o600)
        subprocess.run([POSTMAP, "-c", str(d), f"hash:{d}/sasl_passwd"], check=True,
                       capture_output=True, timeout=30)

    def _run(self, verb: str) -> None:
        out = subprocess.run([POSTFIX, "-c", str(self.dir), verb], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, f"postfix {verb}: {out.stdout}{out.stderr}{self.log()}"

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            try:
                s.connect(("127.0.0.1", self.port))
            except OSError:
                return False
        return True

    def log(self) -> str:
        p = self.dir / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.dir), "stop"], capture_output=True, timeout=60)
        pid_file = self.dir / "queue" / "pid" / "master.pid"
        wait_for(lambda: not _alive(pid_file), timeout=20, what="postfix master to exit")
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
