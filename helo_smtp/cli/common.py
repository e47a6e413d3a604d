"""What every ``helo-smtp`` command shares: the ``--config`` / ``--json`` options, the ``App``
(config and store, opened on first use and closed when the command ends), id-or-name lookups,
time parsing, and output as a table for people or JSON for programs.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from helo_smtp import config as config_mod
from helo_smtp import names
from helo_smtp.config import Config
from helo_smtp.errors import UsageError
from helo_smtp.models import Account, Channel, Domain
from helo_smtp.store import Store, lifetimes
from helo_smtp.store.pg_schema import is_postgres_url

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_HELP = "Config file [default: $HELO_SMTP_CONFIG, else config/helo-smtp.toml]."
MAX_CELL = 60  # table cells are cut here; --json has the full text


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # ctx.meta is shared by every context of one invocation: the root group and the leaf
    # command both accept --config / --json, the one given last wins.
    if value not in (None, False):
        ctx.meta[f"helo.{param.name}"] = value
    return value


config_option = click.option("--config", "config", metavar="FILE", default=None,
                             expose_value=False, callback=_remember, help=CONFIG_HELP)
json_option = click.option("--json", "as_json", is_flag=True, default=False, expose_value=False,
                           callback=_remember, help="Print JSON instead of a table.")


def common(f: F) -> F:
    """Give a command the ``--config`` and ``--json`` options."""
    return config_option(json_option(f))


class App:
    """The config in use and the store behind it, for one command invocation."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx = ctx
        self._cfg: Config | None = None
        self._store: Store | None = None

    @property
    def config_path(self) -> str:
        return config_mod.config_path(self.ctx.meta.get("helo.config"))

    @property
    def json(self) -> bool:
        return bool(self.ctx.meta.get("helo.as_json"))

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            path = self.config_path
            if not Path(path).exists():
                raise UsageError(f"{path}: no such config file; copy "
                                 "config/helo-smtp.example.toml (production) or config/dev.toml "
                                 "(local use) there and edit it, or pass --config / set "
                                 f"${config_mod.ENV_VAR}")
            self._cfg = config_mod.load(path)
        return self._cfg

    @property
    def store(self) -> Store:
        """The store of the config's database; it must exist (``helo-smtp init`` makes it)."""
        if self._store is None:
            path = self.cfg.server.database
            if not is_postgres_url(path) and not Path(path).exists():
                raise UsageError(f"{path}: no database (server.database in {self.cfg.source}); "
                                 "run 'helo-smtp init'")
            # No integrity_check here: it reads the whole file, which the daemon does at start.
            self._store = Store.open(path, lifetimes(self.cfg), check=False)
            self.ctx.call_on_close(self._store.close)
        return self._store


def app() -> App:
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, App):
        root.obj = App(root)
    return root.obj


# ---- lookups by id or natural name --------------------------------------------------------
def find_account(store: Store, ref: str) -> Account:
    return store.accounts.require(ref)


def find_channel(store: Store, ref: str) -> Channel:
    """By id, by name when unique, or as ``ACCOUNT/CHANNEL`` (names are unique per account)."""
    ch = store.channels.get(ref)
    if ch is None and "/" in ref:
        acc_ref, name = ref.split("/", 1)
        acc = store.accounts.get(acc_ref)
        if acc is not None:
            ch = next((c for c in store.channels.list(acc.id) if c.name == name), None)
    if ch is None:
        raise UsageError(f"no channel '{ref}'")
    return ch


def find_domain(store: Store, ref: str) -> Domain:
    """By id or name; a Unicode name is looked up by its A-label."""
    dom = store.domains.get(ref)
    if dom is None and names.is_domain(ref):
        dom = store.domains.get(names.domain_to_ascii(ref))
    if dom is None:
        raise UsageError(f"no domain '{ref}'")
    return dom


def check_domain(name: str) -> str:
    try:
        return names.domain_to_ascii(name)
    except ValueError as exc:
        raise UsageError(f"invalid domain '{name}': {exc}") from None


def check_address(text: str) -> str:
    try:
        return names.check_address(text)
    except ValueError as exc:
        raise UsageError(f"invalid address '{text}': {exc}") from None


# ---- time ---------------------------------------------------------------------------------
def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Since(click.ParamType):
    """``--since 2h`` (a duration back from now: s, m, h, d, w) or a UTC date / date-time."""

    name = "SINCE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        m = _DURATION.match(text.lower())
        if m:
            return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
        try:
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"'{text}' is neither a duration like 2h or 7d nor a date like "
                      "2024-05-01 or 2024-05-01T12:00", param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()


# ---- output -------------------------------------------------------------------------------
def plain(value: Any, key: str = "") -> Any:
    """JSON-ready data: times (``at``, ``*_at``, ``*_until``) as ISO 8601 UTC, enums and
    other objects as text."""
    if isinstance(value, dict):
        return {k: plain(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if (key == "at" or key.endswith(("_at", "_until"))) and \
            isinstance(value, int | float) and not isinstance(value, bool):
        return iso(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def cell(value: Any, key: str = "") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_age"):
        return human_age(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 3] + "..."


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str = "(none)"
          ) -> None:
    """A plain aligned table, one row per line (greppable, no box drawing)."""
    if not rows:
        click.echo(empty)
        return
    grid = [list(columns)] + [[cell(r.get(c), c) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    for line in grid:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def record(data: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """One object as ``key: value`` lines."""
    keys = list(keys or data)
    width = max((len(k) for k in keys), default=0)
    for k in keys:
        click.echo(f"{k.ljust(width)}  {cell(data.get(k), k)}")


def emit(data: Any, human: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else call ``human`` with the plain data."""
    clean = plain(data)
    if app().json:
        click.echo(json.dumps(clean, indent=2, ensure_ascii=False))
    else:
        human(clean)


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str = "(none)"
               ) -> None:
    emit(list(rows), lambda d: table(d, columns, empty))


def emit_record(data: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    emit(data, lambda d: record(d, keys))


def note(text: str) -> None:
    """A remark for people: stderr, so stdout stays clean for --json and pipes."""
    click.echo(text, err=True)


def asdict(obj: Any) -> dict[str, Any]:
    """A dataclass (slots) as a dict, one level deep."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
