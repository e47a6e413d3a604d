"""Write a config as a TOML file, for tests that run ``helo-smtp`` as a subprocess.

    cfg = base_config(tmp_path, dns_port=..., mx_port=..., cert=...)   # tests/support/relay.py
    path = write_config(tmp_path / "helo-smtp.toml", cfg)
    subprocess.Popen([HELO_SMTP, "serve", "--config", str(path)])

Only what config files hold is needed: tables, arrays of tables, strings, numbers, booleans and
arrays of those. The file is read back with ``config.load`` before it is returned, so a config
that would not load fails here, in the test that wrote it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from helo_smtp import config as config_mod
from helo_smtp.config import Config

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        # JSON string escapes are TOML basic-string escapes (\" \\ \n \t \uXXXX).
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(name: str, data: dict[str, Any], out: list[str]) -> None:
    plain = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    if name and (plain or not data):
        out.append(f"[{name}]")
    out.extend(f"{_key(k)} = {_scalar(v)}" for k, v in plain.items())
    for k, v in data.items():
        key = f"{name}.{_key(k)}" if name else _key(k)
        if _is_table(v):
            _table(key, v, out)
        elif _is_table_array(v):
            for item in v:
                out.append(f"[[{key}]]")
                out.extend(f"{_key(ik)} = {_scalar(iv)}" for ik, iv in item.items())


def dumps(data: dict[str, Any]) -> str:
    """TOML text for ``data`` (tables nested one level in arrays of tables are not needed)."""
    out: list[str] = []
    _table("", data, out)
    return "\n".join(out) + "\n"


def write_config(path: Path | str, cfg: Config | dict[str, Any]) -> Path:
    """Write ``cfg`` (a Config or TOML-shaped dict) to ``path``; returns the path."""
    data = config_mod.to_dict(cfg) if isinstance(cfg, Config) else dict(cfg)
    data.pop("source", None)
    path = Path(path)
    path.write_text(dumps(data), encoding="utf-8")
    loaded = config_mod.load(path)
    if isinstance(cfg, Config):
        assert config_mod.to_dict(loaded) == {**config_mod.to_dict(cfg), "source": str(path)}
    return path
