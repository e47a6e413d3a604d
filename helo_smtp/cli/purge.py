"""``helo-smtp purge [--dry-run] [--vacuum]``: the retention policy (SPEC §15) applied now.

The same pass the relay runs in the background (``store/retention.py``), in the same small
batches, with a report of what it freed.
"""

from __future__ import annotations

import click

from helo_smtp.cli.common import app, common, emit


@click.command("purge", short_help="Apply the retention policy now.")
@click.option("--dry-run", is_flag=True, help="Count what would be dropped; change nothing.")
@click.option("--vacuum", is_flag=True,
              help="SQLite: afterwards rewrite the file (VACUUM) to give space back and switch "
                   "it to incremental auto-vacuum. Holds the write lock while it runs.")
@common
def purge(dry_run: bool, vacuum: bool) -> None:
    """Drop message bodies older than [retention] body_days and messages with their
    recipients, attempts and events older than metadata_days (both counted from the last
    recipient's final state; mail still queued, deferred or held is never touched), in small
    batches, as the relay does in the background. Prints what was freed.

    \b
    Example:
      helo-smtp purge --dry-run
      helo-smtp purge --vacuum
    """
    a = app()
    cfg = a.cfg.retention
    rep = a.store.retention.run(cfg.body_days, cfg.metadata_days, batch=cfg.batch_size,
                                pause=0.0 if dry_run else cfg.pause, dry_run=dry_run)
    data = rep.as_dict()
    if vacuum and not dry_run:
        data["vacuum"] = a.store.retention.vacuum()
    verb = "would drop" if dry_run else "dropped"
    emit(data, lambda d: click.echo(
        f"{verb} {d['bodies']} message bodies ({d['body_bytes']} bytes) and "
        f"{d['messages']} messages with their history "
        f"({', '.join(f'{t}: {n}' for t, n in d['rows'].items()) or 'no rows'})"
        + (f"; gave back {d['vacuumed_pages']} pages" if d['vacuumed_pages'] else "")
        + (f"; file {d['vacuum'].get('bytes_before')} -> {d['vacuum'].get('bytes_after')} "
           "bytes" if d.get('vacuum', {}).get('vacuumed') else "")))
