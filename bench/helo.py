"""helo-smtp as the benchmark runs it: its own process, a generated config file, a tenant made
with the store API, direct MX delivery resolved through the test suite's local DNS server.

``helo-smtp --config FILE serve`` when the CLI has ``serve``; otherwise the same through
``helo_smtp.runtime.daemon.serve`` (``python -c``), so the harness worked before the CLI did.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.client import Target

SENDER_DOMAIN = "sender.bench.test"
SENDER = f"app@{SENDER_DOMAIN}"
ROOT = Path(__file__).resolve().parent.parent


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


def to_toml(data: dict[str, Any]) -> str:
    """The small TOML subset our config uses: tables, arrays of tables, scalars, lists."""
    out: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
                out.append("")
            continue
        plain = {k: v for k, v in body.items() if not isinstance(v, dict)}
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in plain.items()]
        out.append("")
        for k, v in body.items():
            if isinstance(v, dict):
                out.append(f"[{section}.{k}]")
                out += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
                out.append("")
    return "\n".join(out)


def make_tenant(db_path: str, dkim_bits: int = 2048) -> tuple[str, str]:
    """Account + verified domain (with a DKIM key) + channel + channel credential.

    Returns (username, secret). Same steps as ``tests/support/relay.py:make_tenant``.
    """
    from helo_smtp import keys
    from helo_smtp.models import AccountStatus
    from helo_smtp.store import Store

    store = Store.open(db_path)
    try:
        acc = store.accounts.create("bench", AccountStatus.ACTIVE)
        private_pem, public_b64 = keys.generate_dkim_key(dkim_bits)
        dom = store.domains.add(acc.id, SENDER_DOMAIN, keys.new_verify_token(), "bench1",
                                private_pem, public_b64)
        store.domains.set_verified(dom.id)
        ch = store.channels.create(acc.id, "main", False, False)
        cred, secret = store.credentials.create(acc.id, ch.id, "bench")
        return cred.username, secret
    finally:
        store.close()


@dataclass
class HeloRelay:
    """One helo-smtp process under ``root``."""

    root: Path
    address: str
    port: int
    broadcast_port: int
    cert: tuple[str, str]
    dns_port: int
    delivery_port: int
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    whatif: tuple[str, ...] = ()  # bench.whatif experiments to load first (never by default)
    username: str = ""
    password: str = ""
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def db_path(self) -> str:
        return str(self.root / "helo.db")

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "server": {"hostname": "helo.bench.test", "database": self.db_path,
                       "node_id": "bench", "free_space_margin_mb": 0, "shutdown_grace": 5.0},
            "tls": {"cert_file": self.cert[0], "key_file": self.cert[1]},
            "listeners": [
                {"name": "submission", "address": self.address, "port": self.port,
                 "tls": "starttls", "mail_type": "header"},
                {"name": "broadcast", "address": self.address, "port": self.broadcast_port,
                 "tls": "starttls", "mail_type": "broadcast"},
            ],
            "dns": {"nameservers": ["127.0.0.1"], "port": self.dns_port, "timeout": 2.0},
            "delivery": {"port": self.delivery_port},
            "pools": {"transactional": {"helo_name": "tx.helo.bench.test"},
                      "broadcast": {"helo_name": "bc.helo.bench.test"}},
            "http": {"listen": ""},
            "logging": {"level": "INFO"},
        }
        for section, values in self.overrides.items():
            target = data.setdefault(section, {})
            for k, v in values.items():
                if isinstance(v, dict):
                    target.setdefault(k, {}).update(v)
                else:
                    target[k] = v
        return data

    def setup(self) -> HeloRelay:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "helo.toml").write_text(to_toml(self.config()))
        self.username, self.password = make_tenant(self.db_path)
        return self

    def command(self) -> list[str]:
        cfg = str(self.root / "helo.toml")
        pre = "".join(f"import bench.whatif; bench.whatif.{w}(); " for w in self.whatif)
        if _cli_has_serve():
            # what the console script runs: helo-smtp serve --config FILE
            return [sys.executable, "-c", pre + "from helo_smtp.cli.main import main; main()",
                    "serve", "--config", cfg]
        code = (pre + "import asyncio, logging; from helo_smtp import config, daemon; "
                "logging.basicConfig(level=logging.INFO); "
                f"asyncio.run(daemon.serve(config.load({cfg!r})))")
        return [sys.executable, "-c", code]

    def start(self) -> HeloRelay:
        log = (self.root / "helo.log").open("ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = subprocess.Popen(self.command(), cwd=self.root, stdout=log, stderr=log,
                                      env=env)
        try:
            procs.wait_port(self.address, self.port, 30)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"helo-smtp did not start: {self.log_tail()}") from None
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.root / "helo.log").read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    def target(self) -> Target:
        return Target(self.address, self.port, self.username, self.password)

    def bc_target(self) -> Target:
        return Target(self.address, self.broadcast_port, self.username, self.password)

    # helo-smtp serve is two processes (listeners + HTTP, and the delivery child): every
    # figure below covers both.
    def cpu_seconds(self) -> float:
        return procs.tree_cpu(self.pid) if self.pid else 0.0

    def pids(self) -> list[int]:
        return procs.tree(self.pid) if self.pid else []

    def settled(self, n: int) -> bool:
        """All ``n`` recipients tried at least once."""
        return self.attempted() >= n

    def rss_bytes(self) -> int:
        return sum(procs.rss(p) for p in self.pids())

    def pss_bytes(self) -> int:
        return sum(procs.pss(p) for p in self.pids())

    def peak_rss_bytes(self) -> int:
        return sum(procs.peak_rss(p) for p in self.pids())

    def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            cur = conn.execute(sql, args)
            rows = cur.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def queued(self) -> int:
        """Recipients still to deliver (queued or deferred)."""
        return self._sql("SELECT count(*) FROM recipients"
                         " WHERE state IN ('queued', 'deferred')")[0][0]

    def states(self) -> dict[str, int]:
        return dict(self._sql("SELECT state, count(*) FROM recipients GROUP BY state"))

    def attempted(self) -> int:
        """Recipients with at least one recorded delivery attempt."""
        return self._sql("SELECT count(*) FROM recipients WHERE attempts > 0")[0][0]

    def flush(self) -> None:
        """Make every deferred recipient due now (what ``postqueue -f`` does for Postfix)."""
        now = time.time()
        self._sql("UPDATE recipients SET next_attempt_at = ? WHERE state = 'deferred'"
                  " AND claimed_by IS NULL", (now,))


def _cli_has_serve() -> bool:
    try:
        from helo_smtp.cli.main import cli
    except ImportError:
        return False
    return "serve" in getattr(cli, "commands", {})
