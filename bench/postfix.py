"""A private Postfix instance: its own config directory, queue and data directories, loopback
listener on a high port, Cyrus SASL (sasldb, ``pwcheck_method: auxprop``), relaying to sinks.

It never reads or writes ``/etc/postfix`` (only the stock ``meta_directory`` file list is read by
``postfix check``) and never binds port 25. ``stop()`` always runs ``postfix -c DIR stop``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.client import Target
from tests.support.postfixmaster import master_cf

POSTFIX_USER = "postfix"
REALM = "postfix.bench.test"



def available() -> bool:
    """Postfix, its sink/source tools and Cyrus saslpasswd2 are installed, and we are root."""
    tools = ("postfix", "smtp-sink", "smtp-source", "saslpasswd2", "postqueue")
    return os.geteuid() == 0 and all(shutil.which(t) or Path("/usr/sbin", t).exists()
                                     for t in tools)


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class PrivatePostfix:
    """One Postfix under ``root``: authenticated relay on ``address:port`` to ``routes``.

    ``routes`` maps a recipient domain to a ``host:port`` next hop (``transport_maps``, inline);
    everything else goes to ``relayhost``.
    """

    root: Path
    address: str
    port: int
    relayhost: str
    routes: dict[str, str] = field(default_factory=dict)
    cert: tuple[str, str] = ("", "")
    username: str = "bench"
    password: str = "bench-secret"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def login(self) -> str:
        return f"{self.username}@{REALM}"

    def main_cf(self) -> str:
        r = self.root
        routes = ", ".join(f"{d}=smtp:[{hp.rsplit(':', 1)[0]}]:{hp.rsplit(':', 1)[1]}"
                           for d, hp in self.routes.items())
        host, port = self.relayhost.rsplit(":", 1)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": f"{r}/queue",
            "data_directory": f"{r}/data",
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
            "mail_owner": POSTFIX_USER,
            "setgid_group": "postdrop",
            "myhostname": REALM,
            "mydomain": "bench.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_transport": "error:local delivery disabled",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            # Must name a real interface address; the smtpd listener itself binds
            # ``address:port`` from master.cf (any 127.0.0.0/8 address).
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.1/32",
            # Relay only for authenticated clients (as helo-smtp: MAIL before AUTH is refused).
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "cyrus_sasl_config_path": f"{r}/sasl",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",  # as helo-smtp: no AUTH before STARTTLS
            "smtpd_tls_cert_file": self.cert[0],
            "smtpd_tls_key_file": self.cert[1],
            "smtpd_peername_lookup": "no",
            "smtp_tls_security_level": "none",
            # Next hops are [ip]:port literals; never ask DNS (traffic stays on loopback).
            "smtp_dns_support_level": "disabled",
            "relayhost": f"[{host}]:{port}",
            "transport_maps": f"inline:{{{routes}}}" if routes else "",
            "maillog_file": f"{r}/maillog",
            "maillog_file_prefixes": str(r),
            "smtputf8_enable": "no",
        }
        settings.update(self.extra)
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def setup(self) -> PrivatePostfix:
        r = self.root
        if r.exists():
            shutil.rmtree(r)
        for d in ("queue", "data", "sasl"):
            (r / d).mkdir(parents=True)
        (r / "main.cf").write_text(self.main_cf())
        (r / "master.cf").write_text(master_cf(f"{self.address}:{self.port}"))
        (r / "sasl" / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
            f"sasldb_path: {r}/sasl/sasldb2\n")
        subprocess.run([_tool("saslpasswd2"), "-f", str(r / "sasl" / "sasldb2"), "-p", "-c",
                        "-u", REALM, self.username], input=self.password.encode(), check=True)
        shutil.chown(r / "sasl" / "sasldb2", POSTFIX_USER, POSTFIX_USER)
        shutil.chown(r / "data", POSTFIX_USER, POSTFIX_USER)
        return self  # ``postfix start`` runs its own configuration checks

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([_tool("postfix"), "-c", str(self.root), *args],
                              capture_output=True, check=False, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace')[-500:]} {self.log_tail()}")
        return done

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.root / "maillog").read_text(errors="replace")[-n:]
        except OSError:
            return "(no maillog)"

    def start(self) -> PrivatePostfix:
        self._postfix("start")
        procs.wait_port(self.address, self.port, 20)
        return self

    def stop(self) -> None:
        """``postfix stop``, then wait for the master (and its children) to go."""
        pid = self.master_pid()
        self._postfix("stop", check=False)
        deadline = time.monotonic() + 20
        while pid and procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and procs.alive(pid):
            self._postfix("abort", check=False)

    def master_pid(self) -> int | None:
        try:
            return int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self) -> list[int]:
        """The master and all its children (smtpd, qmgr, cleanup, smtp, ...)."""
        pid = self.master_pid()
        return procs.tree(pid) if pid else []

    def rss_bytes(self) -> int:
        """Resident memory of the whole instance: Postfix is one process per job, so this sums
        the processes' proportional set sizes (shared libraries counted once)."""
        return sum(procs.pss(p) for p in self.pids())

    def rss_sum_bytes(self) -> int:
        """Plain sum of RSS (counts shared pages once per process: an upper bound)."""
        return sum(procs.rss(p) for p in self.pids())

    def target(self) -> Target:
        return Target(self.address, self.port, self.login, self.password)

    def bc_target(self) -> Target:
        return self.target()  # one queue, one listener

    def cpu_seconds(self) -> float:
        pid = self.master_pid()
        return procs.tree_cpu(pid) if pid else 0.0

    def settled(self, n: int) -> bool:
        """All ``n`` messages tried once and deferred (none in incoming/active any more)."""
        return self._count("incoming", "active", "maildrop") == 0 and self._count("deferred") >= n

    def _count(self, *subs: str) -> int:
        n = 0
        for sub in subs:
            for _, _, files in os.walk(self.root / "queue" / sub):
                n += len(files)
        return n

    def queued(self) -> int:
        """Messages in the queue (incoming + active + deferred + hold + maildrop)."""
        return self._count("incoming", "active", "deferred", "hold", "maildrop")

    def flush(self) -> None:
        """Retry every deferred message now (``postqueue -f``)."""
        subprocess.run([_tool("postqueue"), "-c", str(self.root), "-f"], check=True,
                       capture_output=True, timeout=60)
