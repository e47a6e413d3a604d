"""``helo-smtp``: the management CLI (SPEC §9). Thin: parse, call the library, print.

Every command takes ``--config`` and ``--json`` and exits non-zero with one ``Error:`` line on
bad input, never a traceback: ``HeloGroup.main`` is the one place that turns library errors
(``UsageError``, ``ConfigError``, store errors, OS errors) and click's own into that line.
The nouns live in ``cli_*.py``; this file has the group and the setup commands.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from helo_smtp import store as store_mod
from helo_smtp import tlscert
from helo_smtp.cli import config as cli_config
from helo_smtp.cli import devsetup, docsgen
from helo_smtp.cli.accounts import accounts, domains
from helo_smtp.cli.apikeys import api_keys
from helo_smtp.cli.channels import channels, credentials
from helo_smtp.cli.common import app, common, emit, emit_table, note, prog_name, table
from helo_smtp.cli.dev import dev
from helo_smtp.cli.messages import broadcasts, messages
from helo_smtp.cli.purge import purge
from helo_smtp.cli.queue import queue
from helo_smtp.cli.suppressions import suppressions
from helo_smtp.cli.webhooks import events, webhooks
from helo_smtp.errors import ConfigError, StoreError, UsageError
from helo_smtp.runtime import deliverer, loop, startup
from helo_smtp.store import pg_schema, schema
from helo_smtp.store.groupcommit import connect
from helo_smtp.store.pg_schema import is_postgres_url, redact

_INPUT_ERRORS = (UsageError, ConfigError, StoreError, sqlite3.Error)
# click >= 8.2 raises this for a group called without a command (8.1 printed help and exited).
_NO_ARGS: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class HeloGroup(click.Group):
    """The root group: runs click without its own error printing and prints one line."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: Any, prog_name: str | None, complete_var: str | None,
             **extra: Any) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS as exc:  # `helo-smtp queue`: the menu, not an error
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            return 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            return _fail(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            return _fail(exc.format_message(), exc.exit_code)
        except click.Abort:  # a refused confirmation, ^C or EOF at a prompt
            click.echo(err=True)  # end the prompt's line, as click does
            return _fail("aborted", 1)
        except _INPUT_ERRORS as exc:
            return _fail(str(exc), 1)
        except BrokenPipeError:  # `helo-smtp queue list | head`: not an error
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            return _fail(f"{where}{exc.strerror or exc}", 1)
        return rv if isinstance(rv, int) else 0


def _fail(message: str, code: int) -> int:
    click.echo(f"Error: {_one_line(message)}", err=True)
    return code or 1


def _version() -> str:
    try:
        return importlib.metadata.version("helo-smtp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@click.group("helo-smtp", cls=HeloGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.version_option(_version(), prog_name="helo-smtp")
@common
def cli() -> None:
    """helo-smtp: an SMTP relay for applications, with Helo's rules.

    Manage accounts, domains, channels, credentials and suppressions, inspect messages,
    queues and broadcasts, and run the relay. Every command takes --config and --json.

    \b
    Example:
      helo-smtp --config config/dev.toml init
      helo-smtp accounts list --json
    """


@cli.command(short_help="Create the database and a self-signed TLS cert.")
@common
def init() -> None:
    """Create the database and a self-signed TLS certificate for the config in use.

    Idempotent: an existing database is only migrated and an existing certificate is kept.
    The config file must exist: start from config/helo-smtp.example.toml (production) or
    config/dev.toml (local use). Directories are created as needed.

    \b
    Example:
      cp config/dev.toml config/helo-smtp.toml && helo-smtp init
    """
    a = app()
    path = a.config_path
    cfg = a.cfg  # a missing file is an error: init never invents a config
    db = cfg.server.database
    existed, applied = _migrate(db)
    cert = tlscert.ensure(cfg.tls.cert_file, cfg.tls.key_file, cfg.server.hostname)
    prefix = prog_name() + (f" --config {path}" if "helo.config" in a.ctx.meta else "")
    data = {
        "config": path,
        "database": {"path": redact(db), "created": not existed, "migrations": applied},
        "tls": {"cert_file": cert.cert_file, "key_file": cert.key_file,
                "created": cert.created, "names": list(cert.names)},
        "next": [f"{prefix} check-config", f"{prefix} serve"] if cfg.server.dev_bootstrap else
                [f"{prefix} check-config", f"{prefix} accounts create NAME",
                 f"{prefix} domains add DOMAIN --account NAME",
                 f"{prefix} channels create --account NAME --name NAME",
                 f"{prefix} credentials create --channel ACCOUNT/NAME", f"{prefix} serve"],
    }
    emit(data, _print_init)


def _print_init(d: dict[str, Any]) -> None:
    db, tls = d["database"], d["tls"]
    state = "created" if db["created"] else "exists"
    steps = f", applied {', '.join(db['migrations'])}" if db["migrations"] else ""
    click.echo(f"database     {db['path']} ({state}{steps})")
    if tls["created"]:
        click.echo(f"certificate  {tls['cert_file']} (created, self-signed for "
                   f"{', '.join(tls['names'])})")
        click.echo(f"key          {tls['key_file']} (created, mode 0600)")
    else:
        click.echo(f"certificate  {tls['cert_file']} (exists, kept)")
        click.echo(f"key          {tls['key_file']} (exists, kept)")
    click.echo("Next:")
    for step in d["next"]:
        click.echo(f"  {step}")


@cli.command("check-config")
@common
def check_config() -> None:
    """Validate the config file and print the effective settings.

    Each setting is marked 'file' when the file sets it, else 'default'. Errors name the key
    and the file, and exit 1; warnings go to stderr.

    \b
    Example:
      helo-smtp check-config --config /etc/helo-smtp/helo-smtp.toml
    """
    cfg = app().cfg
    result = cli_config.review(cfg)
    if result.errors:
        raise ConfigError("; ".join(result.errors))
    for w in result.warnings:
        note(f"warning: {w}")
    rows = cli_config.effective(cfg)
    emit({"file": cfg.source, "settings": rows, "warnings": result.warnings},
         _print_settings)


def _print_settings(d: dict[str, Any]) -> None:
    click.echo(f"{d['file']}: ok")
    table(d["settings"], ["key", "value", "origin"])


@cli.command(short_help="Apply pending schema migrations.")
@common
def migrate() -> None:
    """Apply pending schema migrations to the database (safe to run again).

    \b
    Example:
      helo-smtp migrate
    """
    db = app().cfg.server.database
    _, applied = _migrate(db)
    steps = _applied_steps(db)
    rows = [{"step": s, "status": "applied now" if s in applied else "already applied"}
            for s in steps]
    emit({"database": redact(db), "applied": applied, "steps": rows},
         lambda d: (click.echo(f"{d['database']}: "
                               + (f"applied {len(d['applied'])} step(s)" if d["applied"]
                                  else "schema is up to date")),
                    _steps_table(d["steps"])))


def _migrate(db: str) -> tuple[bool, list[str]]:
    """(database existed before, migration steps applied now); creates directories."""
    if is_postgres_url(db):
        return True, store_mod.migrate(db)
    existed = Path(db).exists()
    source = app().cfg.source
    try:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
        why = "a file is in the way" if in_the_way else exc.strerror
        raise ConfigError(f"{source}: server.database = \"{db}\": cannot create the directory "
                          f"{Path(db).parent} ({why}); set server.database to a writable "
                          "path") from None
    problem = startup.database_problem(db, source)
    if problem:
        raise ConfigError(problem)
    return existed, store_mod.migrate(db)


def _applied_steps(db: str) -> list[str]:
    if is_postgres_url(db):
        from helo_smtp.store.pg import connect as pg_connect

        with pg_connect(db) as pg:
            return pg_schema.applied(pg)
    conn = connect(db)
    try:
        return schema.applied(conn)
    finally:
        conn.close()


def _steps_table(rows: list[dict[str, Any]]) -> None:
    table(rows, ["step", "status"])


@cli.command(short_help="Run the relay in the foreground.")
@common
def serve() -> None:
    """Run the relay in the foreground until SIGTERM (systemd Type=notify).

    SIGHUP reloads credentials, channels, suppressions and every setting that does not need a
    restart (those are named in the log). With server.dev_bootstrap = true and no accounts
    yet, a dev account, domain, channel and credential are created once the relay listens,
    and the credential is printed once.

    \b
    Example:
      helo-smtp --config config/dev.toml serve
    """
    cfg = app().cfg
    result = cli_config.review(cfg)
    if result.errors:
        raise ConfigError("; ".join(result.errors))
    for key, path in (("tls.cert_file", cfg.tls.cert_file), ("tls.key_file", cfg.tls.key_file)):
        if not Path(path).exists():
            raise UsageError(f"{cfg.source}: '{key}' {path} does not exist; run 'helo-smtp "
                             "init' for a self-signed certificate or install yours")
    problem = startup.database_problem(cfg.server.database, cfg.source)
    if problem:
        raise ConfigError(problem)
    loop.setup_logging(cfg)
    shared = deliverer.share_metrics() if cfg.server.delivery_process else None
    # Imported only now: share_metrics must run before prometheus-client is first imported.
    from helo_smtp.runtime import daemon

    try:
        # The dev tenant is created (and its secret printed) only once the relay is up: a
        # start that fails never shows a credential for a relay that is not running.
        loop.run(daemon.serve(cfg, on_started=_dev_bootstrap if cfg.server.dev_bootstrap
                          else None))
    finally:
        deliverer.drop_metrics(shared)


def _dev_bootstrap(cfg: Any) -> None:
    dev_store = store_mod.Store.open(cfg.server.database, check=False)
    try:
        tenant = devsetup.bootstrap(dev_store, cfg, echo=click.echo)
    finally:
        dev_store.close()
    if tenant is not None and cfg.dev.inbox:
        see = f"{prog_name()} dev inbox --config {cfg.source}"
        click.echo("It goes to the dev inbox ([dev] inbox = true), signed, links tracked:")
        click.echo(f"  {see}")
        click.echo(f"  {prog_name()} dev inbox show <messageId> --config {cfg.source}")


@cli.command(hidden=True)
@click.option("--check", is_flag=True, help="Exit 1 when a generated file is stale.")
def docs(check: bool) -> None:
    """Regenerate docs/cli.md, docs/settings.md, docs/errors.md and the example config.

    \b
    Example:
      helo-smtp docs
    """
    group = click.get_current_context().find_root().command
    assert isinstance(group, click.Group)
    stale = docsgen.stale(group) if check else docsgen.write(group)
    if check and stale:
        raise UsageError(f"stale: {', '.join(stale)}; run '{docsgen.REGENERATE}'")
    emit_table([{"file": f} for f in stale], ["file"],
               empty="up to date" if check else "nothing changed")


for _group in (accounts, domains, channels, credentials, suppressions, messages, queue,
               broadcasts, dev, purge, webhooks, events, api_keys):
    cli.add_command(_group)


def main() -> None:
    """Console script entry point (``helo-smtp``)."""
    cli.main(prog_name="helo-smtp")


__all__ = ["cli", "main"]
