"""Config review for ``check-config`` and ``serve``: what the type checks of ``config.py``
cannot see (port ranges, duplicate listeners, addresses that are not addresses), and the
effective settings as rows, each marked as set in the file or left at its default."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helo_smtp import config as config_mod
from helo_smtp import names
from helo_smtp.config import Config
from helo_smtp.store.pg_schema import redact


@dataclass
class Review:
    errors: list[str] = field(default_factory=list)  # the relay would not work: refuse
    warnings: list[str] = field(default_factory=list)  # works, but probably not as meant


def _port(value: int) -> bool:
    return 0 <= value <= 65535


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def review(cfg: Config) -> Review:
    """Every problem as one line that names the file and the key."""
    out = Review()
    src = cfg.source

    def err(key: str, text: str) -> None:
        out.errors.append(f"{src}: '{key}' {text}")

    def warn(key: str, text: str) -> None:
        out.warnings.append(f"{src}: '{key}' {text}")

    host = cfg.server.hostname
    if host != "localhost" and not names.is_domain(host) and not _is_ip(host):
        err("server.hostname", "is not a valid host name")
    _review_listeners(cfg, err)
    for key, value in (("dns.port", cfg.dns.port), ("delivery.port", cfg.delivery.port)):
        if not _port(value):
            err(key, "must be a port number (0-65535)")
    for i, ns in enumerate(cfg.dns.nameservers):
        if not _is_ip(ns):
            err(f"dns.nameservers[{i}]", "must be an IP address")
    for pool in ("transactional", "broadcast"):
        for i, addr in enumerate(cfg.pool(pool).source_addresses):
            if not _is_ip(addr):
                err(f"pools.{pool}.source_addresses[{i}]", "must be an IP address")
    if cfg.http.listen and not _host_port(cfg.http.listen):
        err("http.listen", "must be host:port (or empty to turn the HTTP side off)")
    if cfg.http.public_url and not cfg.http.public_url.startswith(("http://", "https://")):
        err("http.public_url", "must start with http:// or https://")
    for key, path in (("tls.cert_file", cfg.tls.cert_file), ("tls.key_file", cfg.tls.key_file)):
        if not Path(path).exists():
            warn(key, f"{path} does not exist yet (run 'helo-smtp init')")
    if not cfg.server.database.startswith("postgres") and not Path(
            cfg.server.database).exists():
        warn("server.database", f"{cfg.server.database} does not exist yet "
             "(run 'helo-smtp init')")
    if cfg.server.dev_bootstrap:
        warn("server.dev_bootstrap", "is on: serve creates a dev account with a domain "
             "verified without DNS; never use this in production")
    return out


def _review_listeners(cfg: Config, err: Any) -> None:
    if not cfg.listeners:
        err("listeners", "must hold at least one [[listeners]] table")
    seen_names: set[str] = set()
    seen_binds: set[tuple[str, int]] = set()
    for i, lst in enumerate(cfg.listeners):
        if not _is_ip(lst.address):
            err(f"listeners[{i}].address", "must be an IP address")
        if not _port(lst.port):
            err(f"listeners[{i}].port", "must be a port number (0-65535)")
        if lst.name and lst.name in seen_names:
            err(f"listeners[{i}].name", f"repeats the name '{lst.name}'")
        if lst.port and (lst.address, lst.port) in seen_binds:
            err(f"listeners[{i}].port", f"{lst.address}:{lst.port} is bound twice")
        seen_names.add(lst.name)
        seen_binds.add((lst.address, lst.port))


def _host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host) and port.isdigit() and _port(int(port))


def effective(cfg: Config) -> list[dict[str, Any]]:
    """(key, value, origin) of every effective setting; origin is ``file`` or ``default``."""
    raw: dict[str, Any] = {}
    if cfg.source and Path(cfg.source).exists():
        raw = tomllib.loads(Path(cfg.source).read_text(encoding="utf-8"))
    data = config_mod.to_dict(cfg)
    data["server"]["database"] = redact(data["server"]["database"])  # no password on screen
    data.pop("source", None)
    rows: list[dict[str, Any]] = []
    _flatten(data, raw, "", rows)
    return rows


def _flatten(data: Any, raw: Any, prefix: str, rows: list[dict[str, Any]]) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            sub = raw.get(k, _MISSING) if isinstance(raw, dict) else _MISSING
            _flatten(v, sub, f"{prefix}{k}" if not prefix else f"{prefix}.{k}", rows)
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        for i, v in enumerate(data):
            sub = raw[i] if isinstance(raw, list) and i < len(raw) else _MISSING
            _flatten(v, sub, f"{prefix}[{i}]", rows)
    else:
        rows.append({"key": prefix, "value": data,
                     "origin": "default" if raw is _MISSING else "file"})


_MISSING: Any = object()
