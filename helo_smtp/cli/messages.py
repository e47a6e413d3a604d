"""``helo-smtp messages`` (what happened to each message and recipient) and
``helo-smtp broadcasts`` (per-broadcast metrics)."""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any

import click

from helo_smtp.cli.common import (
    Since,
    app,
    common,
    emit,
    emit_table,
    find_channel,
    record,
    table,
)
from helo_smtp.errors import UsageError
from helo_smtp.models import MessageStatus

MESSAGE_COLUMNS = ["id", "created_at", "channel", "mail_type", "sender", "subject",
                   "recipients", "status"]
RECIPIENT_COLUMNS = ["id", "address", "state", "held", "attempts", "next_attempt_at",
                     "last_code", "last_status", "last_text", "last_host", "category"]
ATTEMPT_COLUMNS = ["at", "address", "stage", "outcome", "remote_host", "remote_ip", "tls",
                   "code", "status", "text", "category"]
SUMMARY_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")
LIMIT = click.option("--limit", type=click.IntRange(1, 100_000), default=100,
                     show_default=True, help="At most this many rows, newest first.")


@click.group(short_help="Messages, recipients and attempts.")
def messages() -> None:
    """Messages and what happened to each recipient.

    \b
    Example:
      helo-smtp messages list --status delayed --since 1h
    """


@messages.command("list")
@click.option("--channel", metavar="ID|NAME", help="Only this channel's messages.")
@click.option("--status", type=click.Choice([s.value for s in MessageStatus]),
              help="Only messages in this Helo status.")
@click.option("--since", type=Since(), help="Only messages since: 2h, 7d, or a UTC date.")
@LIMIT
@common
def messages_list(channel: str | None, status: str | None, since: float | None,
                  limit: int) -> None:
    """List messages, newest first.

    \b
    Example:
      helo-smtp messages list --channel acme/receipts --since 2024-05-01
    """
    store = app().store
    ch_id = find_channel(store, channel).id if channel else None
    rows = store.admin.messages(channel_id=ch_id, status=status, since=since, limit=limit)
    emit_table(rows, MESSAGE_COLUMNS, empty="(no messages)")


def header_summary(raw: bytes) -> dict[str, str]:
    """The headers people look for first, decoded (RFC 2047) where they are encoded."""
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        return {h: str(msg[h]) for h in SUMMARY_HEADERS if msg[h] is not None}
    except (ValueError, TypeError, IndexError, LookupError):  # a malformed header: raw text
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        return {h: str(msg[h]) for h in SUMMARY_HEADERS if msg[h] is not None}


@messages.command("show")
@click.argument("message_id", metavar="ID")
@common
def messages_show(message_id: str) -> None:
    """Show a message: header summary, each recipient's state and every delivery attempt
    with the remote server's reply.

    \b
    Example:
      helo-smtp messages show 0190a5c4-7f1e-7b3c-9d2e-1a2b3c4d5e6f
    """
    store = app().store
    msg = store.admin.message(message_id)
    if msg is None:
        raise UsageError(f"no message '{message_id}'")
    data = {**msg, "headers": header_summary(store.queue.message_raw(message_id)),
            "recipients_detail": store.admin.recipients(message_id),
            "attempts": store.admin.attempts(message_id)}
    emit(data, _print_message)


def _print_message(d: dict[str, Any]) -> None:
    record(d, ["id", "status", "created_at", "account", "channel", "mail_type", "sender",
               "size", "tags", "metadata", "track_opens", "track_links", "broadcast_id",
               "idempotency_key"])
    click.echo("headers:")
    for k, v in d["headers"].items():
        click.echo(f"  {k}: {v}")
    click.echo("recipients:")
    table(d["recipients_detail"], RECIPIENT_COLUMNS)
    click.echo("attempts:")
    table(d["attempts"], ATTEMPT_COLUMNS, empty="(no attempts yet)")


# ---- broadcasts ---------------------------------------------------------------------------
BROADCAST_COLUMNS = ["id", "name", "channel", "created_at", "accepted", "delivered", "bounced",
                     "delivered_rate", "open_rate", "click_rate"]
RATES = (("delivered_rate", "delivered", "accepted"), ("bounce_rate", "bounced", "accepted"),
         ("open_rate", "unique_opens", "delivered"), ("click_rate", "unique_clicks", "delivered"),
         ("unsubscribe_rate", "unsubscribes", "delivered"))


def rates(b: dict[str, Any]) -> dict[str, float | None]:
    """Percentages, one decimal: delivered and bounced of accepted; unique opens, unique
    clicks and unsubscribes of delivered. None when the denominator is 0."""
    return {name: (round(100.0 * b[num] / b[den], 1) if b[den] else None)
            for name, num, den in RATES}


def _broadcast_data(b: dict[str, Any], channels: dict[str, str]) -> dict[str, Any]:
    return {**b, "channel": channels.get(b["channel_id"], b["channel_id"]), **rates(b)}


def _percent(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (f"{v:.1f}%" if k.endswith("_rate") and v is not None else v)
            for k, v in d.items()}


@click.group(short_help="Broadcasts and their metrics.")
def broadcasts() -> None:
    """Broadcasts and their metrics (accepted, delivered, bounced, opens, clicks, ...).

    \b
    Example:
      helo-smtp broadcasts list --since 7d
    """


@broadcasts.command("list")
@click.option("--channel", metavar="ID|NAME", help="Only this channel's broadcasts.")
@click.option("--since", type=Since(), help="Only broadcasts created since: 2h, 7d, a date.")
@common
def broadcasts_list(channel: str | None, since: float | None) -> None:
    """List broadcasts, newest first, with delivery, open and click rates.

    \b
    Example:
      helo-smtp broadcasts list --channel acme/news
    """
    store = app().store
    ch_id = find_channel(store, channel).id if channel else None
    names = {c.id: c.name for c in store.channels.list()}
    rows = [_broadcast_data(b, names) for b in store.broadcasts.list(ch_id, since)]
    emit(rows, lambda d: table([_percent(r) for r in d], BROADCAST_COLUMNS,
                               empty="(no broadcasts)"))


@broadcasts.command("show")
@click.argument("broadcast", metavar="ID|NAME")
@common
def broadcasts_show(broadcast: str) -> None:
    """Show a broadcast's counters and rates (as percentages).

    \b
    Example:
      helo-smtp broadcasts show "May newsletter"
    """
    store = app().store
    b = store.broadcasts.get(broadcast)
    if b is None:
        raise UsageError(f"no broadcast '{broadcast}'")
    names = {c.id: c.name for c in store.channels.list()}
    emit(_broadcast_data(b, names), lambda d: record(_percent(d), [
        "id", "name", "channel", "channel_id", "created_at", "first_sent_at", "last_sent_at",
        "accepted", "suppressed", "delivered", "deferred", "bounced", "expired",
        "unique_opens", "unique_clicks", "unsubscribes", "complaints", "delivered_rate",
        "bounce_rate", "open_rate", "click_rate", "unsubscribe_rate",
        "bounced_by_category"]))
