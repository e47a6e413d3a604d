"""``helo-smtp channels`` and ``helo-smtp credentials``.

Credential secrets are printed once, by ``credentials create``, and never again: the store
keeps only a salted HMAC-SHA256 of them (see ``credsecret.py`` and docs/credentials.md).
"""

from __future__ import annotations

from typing import Any

import click

from helo_smtp.cli.common import (
    app,
    asdict,
    common,
    emit,
    emit_record,
    emit_table,
    find_account,
    find_channel,
    note,
    record,
)
from helo_smtp.errors import UsageError
from helo_smtp.models import Channel, Credential
from helo_smtp.store import Store

CHANNEL_COLUMNS = ["id", "name", "account", "track_opens", "track_links", "created_at"]
CREDENTIAL_COLUMNS = ["id", "username", "name", "account", "channel", "created_at",
                      "revoked_at"]


@click.group(short_help="Channels: an account's streams of mail.")
def channels() -> None:
    """Channels: an account's streams of mail, each with its tracking defaults, suppression
    list and counters. Refer to one by id, by name when unique, or as ACCOUNT/NAME.

    \b
    Example:
      helo-smtp channels create --account acme --name receipts
    """


def _channel_data(store: Store, ch: Channel) -> dict[str, Any]:
    data = asdict(ch)
    data["account"] = store.accounts.require(ch.account_id).name
    return data


@channels.command("create")
@click.option("--account", required=True, metavar="ID|NAME", help="Owning account.")
@click.option("--name", required=True, help="Channel name (unique in the account).")
@click.option("--track-opens/--no-track-opens", default=False, show_default=True,
              help="Default open tracking (X-Helo-Track-Opens overrides).")
@click.option("--track-links/--no-track-links", default=False, show_default=True,
              help="Default link tracking (X-Helo-Track-Links overrides).")
@common
def channels_create(account: str, name: str, track_opens: bool, track_links: bool) -> None:
    """Create a channel.

    \b
    Example:
      helo-smtp channels create --account acme --name news --track-opens --track-links
    """
    store = app().store
    acc = find_account(store, account)
    ch = store.channels.create(acc.id, name, track_opens, track_links)
    emit_record(_channel_data(store, ch))


@channels.command("list")
@click.option("--account", metavar="ID|NAME", help="Only this account's channels.")
@common
def channels_list(account: str | None) -> None:
    """List channels (deleted ones are not shown).

    \b
    Example:
      helo-smtp channels list --account acme
    """
    store = app().store
    acc_id = find_account(store, account).id if account else None
    names = {a.id: a.name for a in store.accounts.list()}
    rows = [{**asdict(c), "account": names.get(c.account_id, "")}
            for c in store.channels.list(acc_id)]
    emit_table(rows, CHANNEL_COLUMNS, empty="(no channels)")


@channels.command("show")
@click.argument("channel", metavar="ID|NAME")
@common
def channels_show(channel: str) -> None:
    """Show a channel with its message, queue, suppression and credential counts.

    \b
    Example:
      helo-smtp channels show acme/receipts
    """
    store = app().store
    ch = find_channel(store, channel)
    emit_record({**_channel_data(store, ch), **store.admin.channel_counts(ch.id)})


@channels.command("update")
@click.argument("channel", metavar="ID|NAME")
@click.option("--name", help="New name (unique in the account).")
@click.option("--track-opens/--no-track-opens", default=None, help="Default open tracking.")
@click.option("--track-links/--no-track-links", default=None, help="Default link tracking.")
@common
def channels_update(channel: str, name: str | None, track_opens: bool | None,
                    track_links: bool | None) -> None:
    """Rename a channel or change its tracking defaults (applies to new messages).

    \b
    Example:
      helo-smtp channels update acme/news --no-track-links
    """
    store = app().store
    ch = find_channel(store, channel)
    if name is None and track_opens is None and track_links is None:
        raise UsageError("nothing to update; give --name, --track-opens/--no-track-opens or "
                         "--track-links/--no-track-links")
    if name is not None:
        name = name.strip()
        if not name:
            raise UsageError("channel name must not be empty")
        if any(c.name == name and c.id != ch.id for c in store.channels.list(ch.account_id)):
            raise UsageError(f"channel '{name}' already exists on this account")
    new = store.channels.update(ch.id, name=name, track_opens=track_opens,
                                track_links=track_links)
    emit_record(_channel_data(store, new))


@channels.command("delete")
@click.argument("channel", metavar="ID|NAME")
@click.option("--force", is_flag=True,
              help="Delete even with queued mail: its pending recipients are purged.")
@common
def channels_delete(channel: str, force: bool) -> None:
    """Delete a channel. Refused while it has queued mail, unless --force. Its credentials
    are revoked; its history (messages, suppressions) stays readable.

    \b
    Example:
      helo-smtp channels delete acme/old --force
    """
    store = app().store
    ch = find_channel(store, channel)
    purged = store.channels.delete(ch.id, force=force)
    emit({"id": ch.id, "name": ch.name, "deleted": True, "purged_recipients": purged},
         lambda d: click.echo(f"deleted channel {d['name']} ({d['id']}); purged "
                              f"{d['purged_recipients']} queued recipient(s); its "
                              "credentials are revoked"))


# ---- credentials --------------------------------------------------------------------------
@click.group(short_help="SMTP AUTH credentials (secret shown once).")
def credentials() -> None:
    """SMTP AUTH credentials. The secret is shown once, at creation; only a salted
    HMAC-SHA256 of it is stored.

    \b
    Example:
      helo-smtp credentials create --channel acme/receipts --name billing-app
    """


def _credential_data(cred: Credential, accounts: dict[str, str], chans: dict[str, str]
                     ) -> dict[str, Any]:
    data = asdict(cred)
    data["account"] = accounts.get(cred.account_id, "")
    data["channel"] = chans.get(cred.channel_id or "", "(any: X-Helo-Channel-Id)")
    return data


@credentials.command("create")
@click.option("--channel", metavar="ID|NAME", help="Scope the credential to this channel.")
@click.option("--account", metavar="ID|NAME",
              help="Account-wide credential: messages name a channel in X-Helo-Channel-Id.")
@click.option("--name", default="", help="A label (which application uses it).")
@common
def credentials_create(channel: str | None, account: str | None, name: str) -> None:
    """Create a credential and print its username and secret (once: it is not stored).

    \b
    Example:
      helo-smtp credentials create --channel acme/receipts --name billing-app
      helo-smtp credentials create --account acme
    """
    store = app().store
    if not channel and not account:
        raise UsageError("give --channel (channel-scoped) or --account (account-wide)")
    ch = find_channel(store, channel) if channel else None
    acc = find_account(store, account) if account else None
    if ch is not None and acc is not None and ch.account_id != acc.id:
        raise UsageError(f"channel '{channel}' does not belong to account '{account}'")
    account_id = ch.account_id if ch is not None else acc.id  # type: ignore[union-attr]
    cred, secret = store.credentials.create(account_id, ch.id if ch else None, name)
    data = {**_credential_data(cred, _account_names(store), _channel_names(store)),
            "secret": secret}
    note("The secret is shown only now; store it in the application's SMTP settings.")
    emit(data, lambda d: record(d, ["id", "username", "secret", "name", "account",
                                    "channel", "created_at"]))


def _account_names(store: Store) -> dict[str, str]:
    return {a.id: a.name for a in store.accounts.list()}


def _channel_names(store: Store) -> dict[str, str]:
    return {c.id: c.name for c in store.channels.list()}


@credentials.command("list")
@click.option("--account", metavar="ID|NAME", help="Only this account's credentials.")
@click.option("--channel", metavar="ID|NAME", help="Only credentials scoped to this channel.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked credentials.")
@common
def credentials_list(account: str | None, channel: str | None, include_revoked: bool
                     ) -> None:
    """List credentials (never their secrets or hashes).

    \b
    Example:
      helo-smtp credentials list --account acme --all
    """
    store = app().store
    acc_id = find_account(store, account).id if account else None
    ch_id = find_channel(store, channel).id if channel else None
    creds = [c for c in store.credentials.list(acc_id, include_revoked)
             if ch_id is None or c.channel_id == ch_id]
    accounts, chans = _account_names(store), _channel_names(store)
    emit_table([_credential_data(c, accounts, chans) for c in creds], CREDENTIAL_COLUMNS,
               empty="(no credentials)")


@credentials.command("revoke")
@click.argument("credential", metavar="ID|USERNAME")
@common
def credentials_revoke(credential: str) -> None:
    """Revoke a credential so that AUTH with it is refused.

    \b
    Example:
      helo-smtp credentials revoke hs_0123456789abcdef
    """
    store = app().store
    before = store.credentials.get(credential)
    if before is not None and before.revoked_at is not None:
        note(f"credential {before.username} was already revoked")
    cred = store.credentials.revoke(credential)
    emit_record(_credential_data(cred, _account_names(store), _channel_names(store)))
