"""``helo-smtp dev inbox``: list and show what the dev inbox caught (``[dev] inbox``)."""

from __future__ import annotations

from typing import Any

import click

from helo_smtp.cli.common import app, common, emit, iso, note, table
from helo_smtp.devinbox import mailbox
from helo_smtp.errors import UsageError


@click.group("dev")
@common
def dev() -> None:
    """Local development helpers (config/dev.toml)."""


@dev.group("inbox", invoke_without_command=True)
@common
@click.pass_context
def inbox(ctx: click.Context) -> None:
    """List the messages the dev inbox caught, oldest first.

    With [dev] inbox = true (config/dev.toml) every message the relay delivers goes to this
    catch-all inbox instead of the Internet: DKIM-signed, with tracking applied, exactly as a
    recipient's server would get it. IDs are the messageId of the 250 reply.

    \b
    Example:
      helo-smtp dev inbox --config config/dev.toml
      helo-smtp dev inbox show <messageId> --config config/dev.toml
    """
    if ctx.invoked_subcommand is not None:
        return
    cfg = app().cfg
    if not cfg.dev.inbox:
        note(f"{cfg.source}: [dev] inbox is off, so mail goes to the Internet, not here")
    rows = [_row(e) for e in mailbox.entries(cfg.dev.inbox_dir)]
    emit(rows, lambda d: table(d, ["id", "received", "from", "to", "subject", "signed"],
                               empty=f"(empty: {cfg.dev.inbox_dir})"))


def _row(e: mailbox.Entry) -> dict[str, Any]:
    return {**e.summary(), "received": iso(e.received_at), "to": ", ".join(e.recipients),
            "signed": "DKIM" if e.signed else "no"}


@inbox.command("show")
@click.argument("message_id", metavar="ID")
@common
def inbox_show(message_id: str) -> None:
    """Print one message of the dev inbox as delivered: headers (DKIM-Signature, tracking
    links) and body.

    \b
    Example:
      helo-smtp dev inbox show <messageId> --config config/dev.toml
    """
    cfg = app().cfg
    entry = mailbox.find(cfg.dev.inbox_dir, message_id)
    if entry is None:
        raise UsageError(f"no message {message_id!r} in the dev inbox {cfg.dev.inbox_dir} "
                         "(see 'helo-smtp dev inbox')")
    data = {**_row(entry), "raw": entry.raw.decode("utf-8", "replace")}
    emit(data, lambda d: click.echo(d["raw"].replace("\r\n", "\n"), nl=False))


@inbox.command("clear")
@common
def inbox_clear() -> None:
    """Delete every message in the dev inbox.

    \b
    Example:
      helo-smtp dev inbox clear --config config/dev.toml
    """
    cfg = app().cfg
    n = mailbox.clear(cfg.dev.inbox_dir)
    emit({"deleted": n, "inbox_dir": cfg.dev.inbox_dir},
         lambda d: click.echo(f"deleted {d['deleted']} message(s) from {d['inbox_dir']}"))
