"""A real, throwaway PostgreSQL server for the tests.

One server per xdist worker (session fixture ``pg_server``), started lazily by the first test
that needs it: ``initdb`` into a temp directory (as the ``postgres`` user when we are root, since
initdb refuses root), ``postgres`` on 127.0.0.1 with a port of its own (postgres cannot take
port 0: we bind a socket to find a free port and retry on a collision), the unix socket in the
temp directory, fsync off (a crash of a test server loses nothing we need). A database with the
migrations applied is the template; each test gets ``CREATE DATABASE ... TEMPLATE`` (a file
copy, much faster than migrating) and it is dropped afterwards.

Binaries: ``$HELO_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``, else ``initdb`` on
PATH. Missing binaries skip the PostgreSQL tests on a laptop, but fail them when ``$CI`` is set:
CI installs ``postgresql`` (tests/run.sh), so their absence there is a broken setup, not a skip.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Store backends; a test runs on both with
#: ``@pytest.mark.parametrize("backend", BACKENDS, indirect=True)`` (tests/store: all of them).
BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "helo_template"
_counter = itertools.count()


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are, or None."""
    env = os.environ.get("HELO_PG_BINDIR")
    candidates = [Path(env)] if env else []

    def version(p: str) -> tuple[int, ...]:
        m = re.search(r"postgresql/([\d.]+)/bin", p)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                           reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


def require_bindir() -> Path:
    """The binaries, or a skip (laptop) / a loud failure (``$CI`` set)."""
    bindir = find_bindir()
    if bindir is None:
        msg = ("PostgreSQL server binaries not found (apt install postgresql, or set "
               "HELO_PG_BINDIR)")
        if os.environ.get("CI"):
            pytest.fail(msg + ": CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(msg)
    return bindir


def _server_user() -> str | None:
    """The user to run initdb/postgres as: None when we are not root, else ``postgres``
    (created as a system user if the machine has none)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "postgres"], check=True)
    return "postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """``PgServer(bindir).start()``; ``url(db)``, ``create_database()``, ``stop()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _server_user()
        # Not under pytest's tmp dir: that is root-only (0700) and postgres must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="helo-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bindir / args[0]), *args[1:]], check=True, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir)

    def start(self) -> PgServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        for _ in range(10):
            self.port = _free_port()
            if self._launch():
                self._make_template()
                return self
        raise RuntimeError(f"postgres did not start; see {self.log}")

    def _launch(self) -> bool:
        """Start postgres on ``self.port``; False when the port was taken meanwhile."""
        logf = open(self.log, "ab")  # noqa: SIM115 - the server writes it until stop()
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300",
             "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"],
            user=self.user, stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir)
        logf.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "already in use" in self.log.read_text(errors="replace"):
                    return False
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            if self._ready():
                return True
            time.sleep(0.05)
        raise RuntimeError(f"postgres not ready after 30s; see {self.log}")

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def admin(self):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def _make_template(self) -> None:
        from helo_smtp.store import pg_schema

        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        pg_schema.migrate(self.url(TEMPLATE))

    def create_database(self, template: str = TEMPLATE) -> str:
        """A fresh database (``template0``: empty, no migrations); returns its name."""
        name = f"t{os.getpid()}_{next(_counter)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """This xdist worker's PostgreSQL server (started on first use)."""
    server = PgServer(require_bindir())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh migrated database for this test; dropped afterwards."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    with contextlib.suppress(Exception):
        pg_server.drop_database(name)
