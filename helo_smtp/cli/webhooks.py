"""``helo-smtp webhooks`` and ``helo-smtp events`` (SPEC §12). Thin: parse, call the store,
print."""

from __future__ import annotations

from typing import Any

import click

from helo_smtp.cli.common import (
    Since,
    app,
    asdict,
    check_address,
    common,
    emit,
    emit_record,
    emit_table,
    find_channel,
    note,
    table,
)
from helo_smtp.errors import UsageError
from helo_smtp.events import ssrf
from helo_smtp.events.payload import public_event
from helo_smtp.store.events import PUBLIC_TYPES
from helo_smtp.store.webhooks import Endpoint

WEBHOOK_COLUMNS = ["id", "channel_id", "url", "events", "status", "disabled_reason",
                   "max_concurrency", "pending"]
DELIVERY_COLUMNS = ["id", "event_id", "type", "state", "attempts", "last_code", "last_error",
                    "next_attempt_at"]
EVENT_COLUMNS = ["at", "type", "recipient", "messageId", "details"]
_TYPES = ", ".join(PUBLIC_TYPES)


def _types(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip() and t.strip() != "all"]


def _check_url(url: str) -> str:
    reason = ssrf.check_url(url, app().cfg.webhooks.allow_private)
    if reason:
        raise UsageError(f"webhook URL refused: {reason}")
    return url


def _shown(ep: Endpoint) -> dict[str, Any]:
    d = asdict(ep)
    d.pop("secrets")
    d["events"] = list(ep.events) or ["all"]
    d["pending"] = app().store.webhooks.pending_count(ep.id)
    return d


@click.group(short_help="Signed webhooks for events.")
def webhooks() -> None:
    """Endpoints that get every event of a channel as a signed JSON POST.

    \b
    Example:
      helo-smtp webhooks create --channel shop --url https://app.example.com/hooks/helo
    """


@webhooks.command("create")
@click.option("--channel", required=True, metavar="ID|NAME", help="Channel whose events go.")
@click.option("--url", required=True, help="http(s) URL to POST events to.")
@click.option("--events", "types", metavar="a,b", help=f"Only these types ({_TYPES}); default all.")
@click.option("--max-concurrency", type=click.IntRange(1, 100), default=None,
              help="Simultaneous POSTs to this endpoint (default [webhooks] max_concurrency).")
@common
def webhooks_create(channel: str, url: str, types: str | None, max_concurrency: int | None
                    ) -> None:
    """Add an endpoint; prints its signing secret once.

    \b
    Example:
      helo-smtp webhooks create --channel shop --url https://x.example/h --events bounced
    """
    store = app().store
    ch = find_channel(store, channel)
    cap = max_concurrency or app().cfg.webhooks.max_concurrency
    ep, secret = store.webhooks.create(ch.id, _check_url(url), _types(types), cap)
    emit_record({**_shown(ep), "secret": secret})
    note("The secret is shown only now: keep it to verify X-Helo-Signature.")


@webhooks.command("list")
@click.option("--channel", metavar="ID|NAME", help="Only this channel's endpoints.")
@common
def webhooks_list(channel: str | None) -> None:
    """Endpoints, with their status (a disabled one says why) and pending deliveries.

    \b
    Example:
      helo-smtp webhooks list --json
    """
    store = app().store
    ch_id = find_channel(store, channel).id if channel else None
    emit_table([_shown(ep) for ep in store.webhooks.list(ch_id)], WEBHOOK_COLUMNS,
               empty="(no webhooks)")


@webhooks.command("update")
@click.argument("webhook_id")
@click.option("--url", help="New URL.")
@click.option("--events", "types", metavar="a,b", help="New type filter (all: every type).")
@click.option("--enable/--disable", default=None, help="Turn deliveries on or off.")
@click.option("--max-concurrency", type=click.IntRange(1, 100), default=None)
@click.option("--rotate-secret", is_flag=True,
              help="New secret, printed once; the old one keeps signing for 24 h.")
@common
def webhooks_update(webhook_id: str, url: str | None, types: str | None,
                    enable: bool | None, max_concurrency: int | None,
                    rotate_secret: bool) -> None:
    """Change an endpoint; ``--enable`` also re-enables one that was disabled.

    \b
    Example:
      helo-smtp webhooks update 0b6c... --rotate-secret
    """
    store = app().store
    ep = store.webhooks.update(webhook_id, url=_check_url(url) if url else None,
                               types=_types(types), enabled=enable,
                               max_concurrency=max_concurrency)
    out = _shown(ep)
    if rotate_secret:
        out["secret"] = store.webhooks.rotate_secret(ep.id)
        note("The new secret is shown only now; the old one stays valid for 24 h.")
    emit_record(out)


@webhooks.command("delete")
@click.argument("webhook_id")
@common
def webhooks_delete(webhook_id: str) -> None:
    """Remove an endpoint and its pending deliveries.

    \b
    Example:
      helo-smtp webhooks delete 0b6c...
    """
    app().store.webhooks.delete(webhook_id)
    emit({"deleted": webhook_id}, lambda d: click.echo(f"deleted webhook {d['deleted']}"))


@webhooks.command("test")
@click.argument("webhook_id")
@common
def webhooks_test(webhook_id: str) -> None:
    """Queue one signed ``test`` event to the endpoint (the running relay sends it).

    \b
    Example:
      helo-smtp webhooks test 0b6c...
    """
    app().store.webhooks.test(webhook_id)
    emit({"queued": webhook_id}, lambda d: click.echo(f"test event queued for {d['queued']}"))


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--state", type=click.Choice(["pending", "delivered", "failed"]))
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@common
def webhooks_deliveries(webhook_id: str, state: str | None, limit: int) -> None:
    """The newest deliveries of an endpoint: attempts, last reply, next try.

    \b
    Example:
      helo-smtp webhooks deliveries 0b6c... --state failed
    """
    rows = app().store.webhooks.deliveries(webhook_id, state, limit)
    emit_table(rows, DELIVERY_COLUMNS, empty="(no deliveries)")


@click.group(short_help="The event log.")
def events() -> None:
    """Every recipient state change and engagement, as webhooks get them.

    \b
    Example:
      helo-smtp events list --type bounced --since 1d
    """


@events.command("list")
@click.option("--message", "message_id", metavar="ID", help="Only this message's events.")
@click.option("--recipient", help="Only this recipient's events.")
@click.option("--type", "types", metavar="a,b", help=f"Only these types ({_TYPES}).")
@click.option("--since", type=Since(), help="From this time (2h, 7d, or a UTC date).")
@click.option("--until", type=Since(), help="Before this time.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@common
def events_list(message_id: str | None, recipient: str | None, types: str | None,
                since: float | None, until: float | None, limit: int) -> None:
    """List events, oldest first.

    \b
    Example:
      helo-smtp events list --recipient ann@example.com --json
    """
    wanted = _types(types)
    bad = sorted(set(wanted or []) - set(PUBLIC_TYPES))
    if bad:
        raise UsageError(f"unknown event type '{bad[0]}'")
    rcpt = check_address(recipient) if recipient else None
    rows = app().store.events.feed(message_id=message_id, recipient=rcpt, types=wanted,
                                   since=since, until=until, limit=limit)
    out = [public_event(r) for r in rows]
    emit(out, lambda d: table(d, EVENT_COLUMNS, empty="(no events)"))


__all__ = ["events", "webhooks"]
