"""``helo-smtp queue``: inspect and steer the delivery queues while the relay runs.

Changes go straight to the shared SQLite file and the workers see them on their next poll:
no restart, no signal. A target is one message (its id), one recipient (its numeric row id
from ``queue list``), or every pending recipient of a destination domain.
"""

from __future__ import annotations

import time
from typing import Any

import click

from helo_smtp.cli.common import (
    app,
    asdict,
    check_domain,
    common,
    emit,
    emit_table,
    find_channel,
    table,
)
from helo_smtp.errors import UsageError
from helo_smtp.store import Store
from helo_smtp.store.admin import Target

QUEUE_COLUMNS = ["id", "message_id", "address", "mail_type", "state", "held", "attempts",
                 "next_attempt_at", "last_code", "last_status", "last_text", "channel"]


@click.group(short_help="Inspect and steer the delivery queues.")
def queue() -> None:
    """The transactional and broadcast queues: stats, list, retry, hold, release, purge.

    \b
    Example:
      helo-smtp queue stats
    """


@queue.command("stats")
@common
def queue_stats() -> None:
    """Recipients per mail type and state, pending age, the busiest destination domains and
    destinations slowed down by pacing.

    \b
    Example:
      helo-smtp queue stats --json
    """
    store = app().store
    now = time.time()
    stats = store.admin.queue_stats(now)
    stats["slowed"] = [{**asdict(s), "factor_now": s.effective_factor(now)}
                       for s in store.destinations.list(active_at=now)]
    emit(stats, _print_stats)


def _print_stats(d: dict[str, Any]) -> None:
    click.echo("recipients by mail type and state:")
    table(d["by_state"], ["mail_type", "state", "count"], empty="  (empty)")
    click.echo("pending:")
    table(d["pending"], ["mail_type", "pending", "due", "held", "oldest_age"],
          empty="  (nothing pending)")
    click.echo("pending by destination domain:")
    table(d["domains"], ["domain", "pending", "queued", "deferred", "held", "oldest_age"],
          empty="  (none)")
    click.echo("slowed destinations:")
    table(d["slowed"], ["pool", "domain", "factor_now", "slow_until", "reason"],
          empty="  (none)")


@queue.command("list")
@click.option("--state", type=click.Choice(["queued", "deferred", "held"]),
              help="Only queued, deferred or held recipients.")
@click.option("--domain", help="Only this destination domain.")
@click.option("--channel", metavar="ID|NAME", help="Only this channel's mail.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="At most this many rows, soonest due first.")
@common
def queue_list(state: str | None, domain: str | None, channel: str | None, limit: int
               ) -> None:
    """List pending recipients, soonest due first.

    \b
    Example:
      helo-smtp queue list --state deferred --domain example.com
    """
    store = app().store
    ch_id = find_channel(store, channel).id if channel else None
    dom = check_domain(domain) if domain else None
    rows = store.admin.queue_list(state=state, domain=dom, channel_id=ch_id, limit=limit)
    emit_table(rows, QUEUE_COLUMNS, empty="(queue is empty)")


def _target(store: Store, ref: str | None, domain: str | None, all_: bool | None = None
            ) -> Target:
    """The one target given; ``all_`` is None for commands without ``--all``."""
    given = [x for x in (ref, domain, all_ or None) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one target: ID, --domain DOMAIN"
                         + (" or --all" if all_ is not None else ""))
    if domain is not None:
        return Target(domain=check_domain(domain))
    if all_:
        return Target(all=True)
    assert ref is not None
    if ref.isdigit():
        if not store.admin.recipient_exists(int(ref)):
            raise UsageError(f"no recipient '{ref}'")
        return Target(recipient_id=int(ref))
    if store.admin.message(ref) is None:
        raise UsageError(f"no message '{ref}'")
    return Target(message_id=ref)


def _report(verb: str, target: Target, count: int) -> None:
    what = (f"message {target.message_id}" if target.message_id else
            f"recipient {target.recipient_id}" if target.recipient_id is not None else
            f"domain {target.domain}" if target.domain else "the whole queue")
    emit({"action": verb, "target": what, "recipients": count},
         lambda d: click.echo(f"{verb}: {d['recipients']} pending recipient(s) of {what}"))


def _steering(name: str, help_text: str, example: str) -> Any:
    """Define ``queue retry|hold|release``: same target options, one Admin method each."""

    @queue.command(name, help=f"{help_text}\n\n\b\nExample:\n  {example}")
    @click.argument("ref", metavar="[ID]", required=False)
    @click.option("--domain", help="Every pending recipient of this destination domain.")
    @common
    def cmd(ref: str | None, domain: str | None) -> None:
        store = app().store
        target = _target(store, ref, domain)
        _report(name, target, getattr(store.admin, name)(target))

    return cmd


_steering("retry", "Make pending recipients due now (ID: a message id or a recipient id "
          "from 'queue list'). Held and in-flight recipients are left alone.",
          "helo-smtp queue retry --domain example.com")
_steering("hold", "Hold pending recipients: they stay queued but are not delivered until "
          "released.", "helo-smtp queue hold --domain slow.example")
_steering("release", "Release held recipients back to normal scheduling.",
          "helo-smtp queue release --domain slow.example")


@queue.command("purge", short_help="End delivery of pending recipients (recorded as expired).")
@click.argument("ref", metavar="[ID]", required=False)
@click.option("--domain", help="Every pending recipient of this destination domain.")
@click.option("--all", "all_", is_flag=True, help="Every pending recipient.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common
def queue_purge(ref: str | None, domain: str | None, all_: bool, yes: bool) -> None:
    """Stop delivering pending recipients (ID: a message id or a recipient id from 'queue
    list'): each is recorded as expired, with an event. Asks first unless --yes.

    \b
    Example:
      helo-smtp queue purge --domain typo-domain.example --yes
    """
    store = app().store
    target = _target(store, ref, domain, all_)
    count = store.admin.count_pending(target)
    if count and not yes:
        click.confirm(f"purge {count} pending recipient(s)?", abort=True, err=True)
    _report("purge", target, store.admin.purge(target))
