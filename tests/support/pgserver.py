"""A real, throwaway PostgreSQL server for the tests.

One server per xdist worker (session fixture ``pg_server``), started lazily by the first test
that needs it, in a temp directory of its own, as the ``postgres`` user when we are root
(initdb and postgres refuse root), on 127.0.0.1 with a port of its own (postgres cannot take
port 0: we bind a socket to find a free port and retry on a collision), the unix socket in the
temp directory, fsync off (a crash of a test server loses nothing we need).

Its data directory is a copy of a cached one: ``initdb`` plus a database ``helo_template``
with the migrations applied, built once per (binaries, migrations) under a file lock and kept
in the temp dir (initdb takes seconds when xdist workers start together; a copy takes 0.1 s).
Each test gets ``CREATE DATABASE ... TEMPLATE helo_template`` (a file copy, ~0.25 s: a
background thread keeps two ready ahead of the tests) and it is dropped afterwards.

Binaries: ``$HELO_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``, else ``initdb`` on
PATH. Missing binaries skip the PostgreSQL tests on a laptop; in CI that skip fails the run
(tests/support/noskip.py): CI installs ``postgresql`` (tests/run.sh).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import itertools
import os
import pwd
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
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
    """The binaries, or a skip (a failure in CI: tests/support/noskip.py)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt install postgresql, or set "
                    "HELO_PG_BINDIR)")
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

    def __init__(self, bindir: Path, workdir: Path | None = None, durable: bool = False
                 ) -> None:
        self.bindir = bindir
        self.durable = durable  # fsync on, as in production (benchmarks); off for tests
        self.user = _server_user()
        # Not under pytest's tmp dir: that is root-only (0700) and postgres must reach it.
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="helo-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._spares: queue.Queue[str] = queue.Queue(maxsize=2)
        self._spare_maker = threading.Thread(target=self._make_spares, name="pg-spares",
                                             daemon=True)
        self._stopping = threading.Event()
        self._chown(self.dir)

    def _chown(self, path: Path) -> None:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bindir / args[0]), *args[1:]], check=True, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir)

    def start(self) -> PgServer:
        cached = self._cached_data()
        subprocess.run(["cp", "-a", str(cached), str(self.data)], check=True, user=self.user)
        self._start_server()
        self._spare_maker.start()
        return self

    def _start_server(self) -> None:
        for _ in range(10):
            self.port = _free_port()
            if self._launch():
                return
        raise RuntimeError(f"postgres did not start; see {self.log}")

    def _cached_data(self) -> Path:
        """The data directory with the migrated template, built once and reused."""
        from helo_smtp.store import pg_schema

        key = hashlib.sha256("\0".join([str(self.bindir), *(f"{n}:{sql}" for n, sql in
                                                            pg_schema.MIGRATIONS)]).encode())
        root = Path(tempfile.gettempdir()) / f"helo-pg-cache-{os.geteuid()}"
        ready = root / key.hexdigest()[:20]
        if (ready / "PG_VERSION").is_file():
            return ready
        root.mkdir(exist_ok=True)
        with open(root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one xdist worker builds, the others wait
            if not (ready / "PG_VERSION").is_file():
                builder = PgServer(self.bindir, Path(tempfile.mkdtemp(dir=root)))
                builder._run("initdb", "-D", str(builder.data), "-U", "postgres",
                             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
                             "--no-instructions")
                builder._start_server()
                builder._make_template()
                builder._shutdown()
                os.rename(builder.data, ready)
                shutil.rmtree(builder.dir, ignore_errors=True)
        return ready

    def _launch(self) -> bool:
        """Start postgres on ``self.port``; False when the port was taken meanwhile."""
        logf = open(self.log, "ab")  # noqa: SIM115 - the server writes it until stop()
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", f"fsync={'on' if self.durable else 'off'}",
             "-c", f"full_page_writes={'on' if self.durable else 'off'}",
             "-c", "max_connections=300", "-c", "log_min_messages=warning",
             "-c", f"shared_buffers={'128MB' if self.durable else '32MB'}"],
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
        from helo_smtp.store.pg import migrate

        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        migrate(self.url(TEMPLATE))

    def create_database(self, template: str = TEMPLATE) -> str:
        """A fresh database (``template0``: empty, no migrations); returns its name."""
        if template == TEMPLATE and self._spare_maker.is_alive():
            with contextlib.suppress(queue.Empty):
                return self._spares.get(timeout=30)
        return self._create(template)

    def _create(self, template: str) -> str:
        name = f"t{os.getpid()}_{next(_counter)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def _make_spares(self) -> None:
        """Keep migrated databases ready so a test never waits for the file copy."""
        while not self._stopping.is_set():
            try:
                name = self._create(TEMPLATE)
            except Exception:  # noqa: BLE001 - server going away; create_database times out
                return
            while not self._stopping.is_set():
                try:
                    self._spares.put(name, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop(self) -> None:
        self._stopping.set()
        self._shutdown()
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
