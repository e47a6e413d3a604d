"""What a SIGHUP can change in a running relay, and what needs a restart.

``Relay.reload`` applies every setting except ``RESTART_ONLY``: those are bound at start
(sockets, files, the store, the process layout), so a changed value is named in one
``event=reload_partial`` line and the old value stays in force until the next start. Every
setting of ``docs/settings.md`` is one or the other; ``tests/ops/test_reload.py`` checks that.
"""

from __future__ import annotations

from typing import Any

from helo_smtp import config as config_mod
from helo_smtp.config import Config

#: Settings (or whole sections, ending in ".") bound at start-up.
RESTART_ONLY: tuple[str, ...] = (
    "server.database",          # the store is open
    "server.node_id",           # leases and connection slots are held under it
    "server.delivery_process",  # the process layout
    "server.dev_bootstrap",     # runs once, before the listeners start
    "tls.",                     # the server TLS context and implicit-TLS sockets
    "[[listeners]].",           # bound sockets
    "http.listen",              # a bound socket
    "http.secret",              # tracking links already sent must keep working
    "dev.",                     # the dev inbox's sink is started with the relay
)


def needs_restart(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESTART_ONLY)


def _values(cfg: Config) -> dict[str, Any]:
    data = config_mod.to_dict(cfg)
    out: dict[str, Any] = {}
    for key, *_ in config_mod.settings_table():
        if key.startswith("[["):
            table, _, name = key.partition("].")
            out[key] = [item.get(name) for item in data[table.strip("[]")]]
            continue
        node: Any = data
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def changed(old: Config, new: Config) -> list[str]:
    """Keys whose value differs between two configs."""
    a, b = _values(old), _values(new)
    return [k for k in a if a[k] != b[k]]


def restart_needed(old: Config, new: Config) -> list[str]:
    """Changed keys that a reload cannot apply."""
    return [k for k in changed(old, new) if needs_restart(k)]
