"""Start-up failures that tell the operator what to do: each names the setting, its value and
the fix, in the one ``Error:`` line the CLI prints (``serve``, ``init``)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from helo_smtp.errors import ConfigError


def database_problem(path: str, source: str) -> str | None:
    """Why a SQLite ``server.database`` cannot be opened or created, or None when it can
    (a file that exists but is no database is the store's own, "restore from backup")."""
    if path.startswith(("postgres://", "postgresql://")) or path == ":memory:":
        return None
    p = Path(path)
    where = f"{source}: server.database = \"{path}\""
    if p.is_dir():
        return f"{where} is a directory; name a file in it (e.g. {p / 'helo-smtp.db'})"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        return (f"{where}: the directory {parent} does not exist; create it (mkdir -p "
                f"{parent}) or set server.database to a writable path, then run "
                "'helo-smtp init'")
    if not parent.is_dir():
        return f"{where}: {parent} is not a directory; set server.database to a writable path"
    if p.exists() and not os.access(p, os.R_OK | os.W_OK):
        return (f"{where}: the file is not readable and writable by this user (uid "
                f"{os.getuid()}); fix its owner or mode, or run as the user that owns it")
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"{where}: the directory {parent} is not writable by this user (uid "
                f"{os.getuid()}); SQLite writes its journal next to the file: fix the "
                "directory's owner or mode, or set server.database elsewhere")
    return None


def bind_error(what: str, key: str, address: str, port: int, exc: OSError,
               source: str) -> ConfigError:
    """``exc`` from binding ``address:port`` as a line naming the listener and its key."""
    reason = {
        errno.EADDRINUSE: "the port is already in use (another helo-smtp, or a mail server?); "
                          f"stop it (see: ss -ltnp 'sport = :{port}') or change {key}",
        errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit "
                      f"grants it); run it so, or change {key} to a port above 1023",
        errno.EADDRNOTAVAIL: f"{address} is not an address of this machine; change {key}",
    }.get(exc.errno or 0, f"{exc.strerror or exc}; check {key}")
    return ConfigError(f"{source}: {what} cannot listen on {address}:{port}: {reason}")
