"""``helo-smtp api-keys``: keys for the HTTP send API (SPEC §9, §11).

The key (``helo_<id>_<secret>``) is printed once, by ``api-keys create``; the store keeps only
a salted HMAC-SHA256 of the secret, as for SMTP credentials (``credsecret.py``).
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
from helo_smtp.models import ApiKey
from helo_smtp.store import Store

COLUMNS = ["id", "name", "account", "channel", "created_at", "last_used_at", "revoked_at"]


@click.group("api-keys", short_help="HTTP send API keys (key shown once).")
def api_keys() -> None:
    """Keys for the HTTP send API (Authorization: Bearer). The key is shown once, at
    creation; only a salted HMAC-SHA256 of its secret is stored.

    \b
    Example:
      helo-smtp api-keys create --channel acme/receipts --name billing-app
    """


def _data(key: ApiKey, store: Store) -> dict[str, Any]:
    data = asdict(key)
    data["account"] = {a.id: a.name for a in store.accounts.list()}.get(key.account_id, "")
    chans = {c.id: c.name for c in store.channels.list()}
    data["channel"] = chans.get(key.channel_id or "", "(any: X-Helo-Channel-Id)")
    return data


@api_keys.command("create")
@click.option("--channel", metavar="ID|NAME", help="Scope the key to this channel.")
@click.option("--account", metavar="ID|NAME",
              help="Account-wide key: requests name a channel in X-Helo-Channel-Id.")
@click.option("--name", default="", help="A label (which application uses it).")
@common
def create(channel: str | None, account: str | None, name: str) -> None:
    """Create a key and print it (once: it is not stored).

    \b
    Example:
      helo-smtp api-keys create --channel acme/receipts --name billing-app
      helo-smtp api-keys create --account acme
    """
    store = app().store
    if not channel and not account:
        raise UsageError("give --channel (channel-scoped) or --account (account-wide)")
    ch = find_channel(store, channel) if channel else None
    acc = find_account(store, account) if account else None
    if ch is not None and acc is not None and ch.account_id != acc.id:
        raise UsageError(f"channel '{channel}' does not belong to account '{account}'")
    account_id = ch.account_id if ch is not None else acc.id  # type: ignore[union-attr]
    key, text = store.api_keys.create(account_id, ch.id if ch else None, name)
    note("The key is shown only now; store it in the application's settings.")
    emit({**_data(key, store), "key": text},
         lambda d: record(d, ["id", "key", "name", "account", "channel", "created_at"]))


@api_keys.command("list")
@click.option("--account", metavar="ID|NAME", help="Only this account's keys.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@common
def list_(account: str | None, include_revoked: bool) -> None:
    """List keys with their last-used time (never their secrets or hashes).

    \b
    Example:
      helo-smtp api-keys list --account acme
    """
    store = app().store
    acc_id = find_account(store, account).id if account else None
    emit_table([_data(k, store) for k in store.api_keys.list(acc_id, include_revoked)],
               COLUMNS, empty="(no API keys)")


@api_keys.command("revoke")
@click.argument("key_id", metavar="ID")
@common
def revoke(key_id: str) -> None:
    """Revoke a key: every node refuses it from the next request on.

    \b
    Example:
      helo-smtp api-keys revoke 0123456789abcdef
    """
    store = app().store
    emit_record(_data(store.api_keys.revoke(key_id), store))
