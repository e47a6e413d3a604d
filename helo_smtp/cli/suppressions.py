"""``helo-smtp suppressions``: a channel's do-not-send list (add, remove, list, import, export).

Imports stream the file and write in batches of ``BATCH`` addresses, one transaction each, so a
file of millions of lines neither holds the writer for long nor needs to fit in one commit; the
running relay keeps accepting mail in between.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import click

from helo_smtp import names
from helo_smtp.cli.common import (
    app,
    asdict,
    check_address,
    common,
    emit,
    emit_table,
    find_channel,
    iso,
    note,
    record,
)
from helo_smtp.models import SuppressionReason
from helo_smtp.store import Store

BATCH = 1000
PROGRESS_MIN_BYTES = 64 * 1024  # smaller files finish before a bar would be useful
ADDRESS_COLUMNS = ("email", "address", "email_address", "e-mail")
EXPORT_COLUMNS = ["address", "reason", "created_at", "source_message_id"]
REASONS = click.Choice([r.value for r in SuppressionReason])
CHANNEL_OPT = click.option("--channel", required=True, metavar="ID|NAME",
                           help="Channel (id, unique name or ACCOUNT/NAME).")


@click.group(short_help="Per-channel suppression lists.")
def suppressions() -> None:
    """Per-channel suppression lists: addresses the relay will not send to.

    \b
    Example:
      helo-smtp suppressions add --channel acme/news bob@example.com
    """


@suppressions.command("add")
@CHANNEL_OPT
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@click.option("--reason", type=REASONS, default="manual", show_default=True)
@common
def suppressions_add(channel: str, addresses: tuple[str, ...], reason: str) -> None:
    """Suppress addresses on a channel. Nothing is added when any address is invalid.

    \b
    Example:
      helo-smtp suppressions add --channel acme/news a@example.com b@example.org
    """
    store = app().store
    ch = find_channel(store, channel)
    valid = [check_address(a) for a in addresses]
    added, present = store.suppressions.add(ch.id, valid, SuppressionReason(reason))
    emit({"channel": ch.id, "added": added, "already_present": present},
         lambda d: click.echo(f"added {d['added']}, already present {d['already_present']}"))


@suppressions.command("remove")
@CHANNEL_OPT
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@common
def suppressions_remove(channel: str, addresses: tuple[str, ...]) -> None:
    """Remove addresses from a channel's suppression list.

    \b
    Example:
      helo-smtp suppressions remove --channel acme/news a@example.com
    """
    store = app().store
    ch = find_channel(store, channel)
    valid = list(dict.fromkeys(check_address(a).lower() for a in addresses))
    removed = store.suppressions.remove(ch.id, valid)
    emit({"channel": ch.id, "removed": removed, "not_found": len(valid) - removed},
         lambda d: click.echo(f"removed {d['removed']}, not found {d['not_found']}"))


@suppressions.command("list")
@CHANNEL_OPT
@click.option("--reason", type=REASONS, help="Only this reason.")
@common
def suppressions_list(channel: str, reason: str | None) -> None:
    """List a channel's suppressions.

    \b
    Example:
      helo-smtp suppressions list --channel acme/news --reason hard_bounce
    """
    store = app().store
    ch = find_channel(store, channel)
    rows = store.suppressions.list(ch.id, SuppressionReason(reason) if reason else None)
    emit_table([asdict(s) for s in rows], EXPORT_COLUMNS, empty="(no suppressions)")


@dataclass
class ImportSummary:
    added: int = 0
    already_present: int = 0
    duplicates: int = 0  # repeated inside the file
    invalid: int = 0
    invalid_examples: list[str] = field(default_factory=list)

    def bad(self, line_no: int, why: str) -> None:
        self.invalid += 1
        if len(self.invalid_examples) < 10:
            self.invalid_examples.append(f"line {line_no}: {why}")


def read_entries(lines: Iterable[str]) -> Iterator[tuple[int, str, str | None]]:
    """(line number, address text, reason text or None) from a CSV with a header naming an
    ``email`` / ``address`` column (and optionally ``reason``), or one address per line.
    Blank lines and ``#`` comments are skipped."""
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return
    first = first.removeprefix("\ufeff")  # a BOM that came through stdin
    header = [h.strip().lower() for h in next(csv.reader([first]), [])]
    col = next((header.index(c) for c in ADDRESS_COLUMNS if c in header), None)
    if col is None:
        yield from _plain_lines(first, it)
        return
    reason_col = header.index("reason") if "reason" in header else None
    for n, row in enumerate(csv.reader(it), start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        reason = row[reason_col].strip() if reason_col is not None and \
            reason_col < len(row) else None
        yield n, row[col] if col < len(row) else "", reason or None


def _plain_lines(first: str, rest: Iterator[str]) -> Iterator[tuple[int, str, str | None]]:
    for n, line in enumerate(itertools.chain([first], rest), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield n, text, None


class _Importer:
    """Validates, de-duplicates and writes entries in batches of ``BATCH``."""

    def __init__(self, store: Store, channel_id: str, default: SuppressionReason) -> None:
        self.store, self.channel_id, self.default = store, channel_id, default
        self.summary = ImportSummary()
        self.seen: set[str] = set()
        self.pending: list[tuple[str, SuppressionReason]] = []

    def take(self, line_no: int, text: str, reason_text: str | None) -> None:
        if "\ufffd" in text:
            self.summary.bad(line_no, "not valid UTF-8")
            return
        try:
            addr = names.check_address(text).lower()
        except ValueError as exc:
            self.summary.bad(line_no, str(exc))
            return
        try:
            reason = SuppressionReason(reason_text) if reason_text else self.default
        except ValueError:
            self.summary.bad(line_no, "unknown reason")
            return
        if addr in self.seen:
            self.summary.duplicates += 1
            return
        self.seen.add(addr)
        self.pending.append((addr, reason))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        by_reason: dict[SuppressionReason, list[str]] = {}
        for addr, reason in self.pending:
            by_reason.setdefault(reason, []).append(addr)
        for reason, addrs in by_reason.items():
            added, present = self.store.suppressions.add(self.channel_id, addrs, reason)
            self.summary.added += added
            self.summary.already_present += present
        self.pending.clear()


@contextlib.contextmanager
def _open(path: str, mode: str) -> Iterator[IO[str]]:
    """A text file for CSV (newline="" as the csv module asks), or stdin / stdout for '-'.
    Input may start with a BOM (spreadsheet exports); undecodable bytes become U+FFFD."""
    if path == "-":
        yield sys.stdin if mode == "r" else sys.stdout
        return
    if mode == "r":
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            yield fh
    else:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            yield fh


def _counting(fh: IO[str], bar: Any) -> Iterator[str]:
    for line in fh:
        bar.update(len(line.encode("utf-8", "replace")))
        yield line


@suppressions.command("import")
@CHANNEL_OPT
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--reason", type=REASONS, default="manual", show_default=True,
              help="Reason for rows without a 'reason' column.")
@common
def suppressions_import(channel: str, file: str, reason: str) -> None:
    """Import addresses from FILE ('-': stdin): a CSV with an 'email' or 'address' column
    (and optionally 'reason'), or one address per line. Invalid lines are counted and
    skipped; a summary is printed.

    \b
    Example:
      helo-smtp suppressions import --channel acme/news bounces.csv
    """
    store = app().store
    ch = find_channel(store, channel)
    imp = _Importer(store, ch.id, SuppressionReason(reason))
    with _open(file, "r") as fh:
        size = os.fstat(fh.fileno()).st_size if file != "-" else 0
        with click.progressbar(length=max(size, 1), label="importing",
                               file=sys.stderr,
                               hidden=size < PROGRESS_MIN_BYTES) as bar:
            for entry in read_entries(_counting(fh, bar)):
                imp.take(*entry)
            imp.flush()
    s = imp.summary
    for example in s.invalid_examples:
        note(f"invalid: {example}")
    emit({"channel": ch.id, **asdict(s)}, lambda d: record(
        d, ["channel", "added", "already_present", "duplicates", "invalid"]))


@suppressions.command("export")
@CHANNEL_OPT
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@common
def suppressions_export(channel: str, file: str) -> None:
    """Write a channel's suppressions as CSV (address,reason,created_at,source_message_id)
    to FILE, or stdout; with --json, as a JSON array.

    \b
    Example:
      helo-smtp suppressions export --channel acme/news suppressions.csv
    """
    a = app()
    ch = find_channel(a.store, channel)
    rows = a.store.suppressions.list(ch.id)
    with _open(file, "w") as out:
        if a.json:
            json.dump([{**asdict(s), "created_at": iso(s.created_at)} for s in rows], out,
                      indent=2, ensure_ascii=False)
            out.write("\n")
        else:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(EXPORT_COLUMNS)
            for s in rows:
                w.writerow([s.address, s.reason.value, iso(s.created_at),
                            s.source_message_id or ""])
    if file != "-":
        note(f"exported {len(rows)} suppression(s) to {file}")
