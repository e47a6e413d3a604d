"""suppressions add / remove / list / import / export."""

from __future__ import annotations

import csv
import io
import json

import pytest

from helo_smtp.cli import suppressions as cli_suppressions
from helo_smtp.models import SuppressionReason
from tests.cli.conftest import CLI


@pytest.fixture
def chan(cli: CLI) -> str:
    cli.ok("accounts", "create", "acme")
    return cli.json("channels", "create", "--account", "acme", "--name", "news")["id"]


def test_add_list_remove(cli: CLI, chan, db_store):
    out = cli.json("suppressions", "add", "--channel", "acme/news", "A@Example.test",
                   "b@example.test")
    assert out == {"channel": chan, "added": 2, "already_present": 0}
    again = cli.json("suppressions", "add", "--channel", chan, "a@example.test",
                     "c@example.test", "--reason", "complaint")
    assert (again["added"], again["already_present"]) == (1, 1)
    rows = cli.json("suppressions", "list", "--channel", "news")
    assert [(r["address"], r["reason"]) for r in rows] == [
        ("a@example.test", "manual"), ("b@example.test", "manual"),
        ("c@example.test", "complaint")]
    only = cli.json("suppressions", "list", "--channel", "news", "--reason", "complaint")
    assert [r["address"] for r in only] == ["c@example.test"]
    assert db_store.suppressions.filter(chan, ["B@example.test"]) == {"B@example.test"}
    gone = cli.json("suppressions", "remove", "--channel", "news", "b@example.test",
                    "nobody@example.test")
    assert (gone["removed"], gone["not_found"]) == (1, 1)
    assert db_store.suppressions.filter(chan, ["b@example.test"]) == set()
    counts = db_store.events.counts()
    assert counts["suppression.added"] == 3 and counts["suppression.removed"] == 2


def test_bad_input(cli: CLI, chan, db_store):
    msg = cli.fail("suppressions", "add", "--channel", "news", "ok@example.test", "not-an-addr")
    assert msg == ("Error: invalid address 'not-an-addr': address needs a local part, an @ "
                   "and a domain")
    assert db_store.suppressions.list(chan) == []  # nothing added when one is bad
    assert "invalid address" in cli.fail("suppressions", "add", "--channel", "news",
                                         "a@bad_domain.test")
    assert "invalid address" in cli.fail("suppressions", "remove", "--channel", "news", "x@")
    assert "no channel 'ghost'" in cli.fail("suppressions", "list", "--channel", "ghost")
    assert "'spam'" in cli.fail("suppressions", "add", "--channel", "news", "a@example.test",
                                "--reason", "spam", code=2)


def test_import_csv_with_header_reasons_and_invalid_rows(cli: CLI, chan, tmp_path):
    cli.ok("suppressions", "add", "--channel", "news", "old@example.test")
    f = tmp_path / "list.csv"
    f.write_text("\ufeffName,Email,reason\n"  # Excel's BOM and a capitalised header
                 "Ann,ann@example.test,complaint\n"
                 "Old,OLD@example.test,\n"
                 "Bad,not an address,\n"
                 "Dup,ann@example.test,\n"
                 "Weird,w@example.test,sometimes\n"
                 ",,\n"
                 "Bob,bob@example.test,\n", encoding="utf-8")
    res = cli.ok("suppressions", "import", "--channel", "news", str(f), "--json")
    out = json.loads(res.stdout)
    assert (out["added"], out["already_present"], out["duplicates"], out["invalid"]) == (
        2, 1, 1, 2)
    assert out["invalid_examples"] == [
        "line 4: address needs a local part, an @ and a domain", "line 6: unknown reason"]
    assert "invalid: line 4" in res.stderr
    rows = {r["address"]: r["reason"] for r in cli.json("suppressions", "list", "--channel",
                                                        "news")}
    assert rows == {"ann@example.test": "complaint", "bob@example.test": "manual",
                    "old@example.test": "manual"}


def test_import_plain_list_in_batches_with_progress(cli: CLI, chan, tmp_path, db_store,
                                                    monkeypatch):
    monkeypatch.setattr(cli_suppressions, "BATCH", 1000)
    lines = ["# exported from the old provider", ""]
    lines += [f"subscriber-number-{i}@example.test" for i in range(2500)]
    lines += ["broken@", "subscriber-number-7@example.test"]
    f = tmp_path / "plain.txt"
    f.write_text("\n".join(lines) + "\n")
    writes = []
    real_add = db_store.suppressions.__class__.add

    def spy(self, channel_id, addresses, reason=SuppressionReason.MANUAL):
        addrs = list(addresses)
        writes.append(len(addrs))
        return real_add(self, channel_id, addrs, reason)

    monkeypatch.setattr(db_store.suppressions.__class__, "add", spy)
    res = cli.ok("suppressions", "import", "--channel", "news", str(f), "--reason",
                 "unsubscribe")
    assert writes == [1000, 1000, 500]  # one transaction per batch
    assert "importing" in res.stderr  # the progress bar (file > 64 KiB)
    summary = dict(line.split(None, 1) for line in res.stdout.splitlines())
    assert (summary["added"], summary["already_present"], summary["duplicates"],
            summary["invalid"]) == ("2500", "0", "1", "1")
    assert len(db_store.suppressions.list(chan, SuppressionReason.UNSUBSCRIBE)) == 2500


def test_import_from_stdin(cli: CLI, chan):
    res = cli.ok("suppressions", "import", "--channel", "news", "-",
                 input="x@example.test\ny@example.test\n")
    summary = dict(line.split(None, 1) for line in res.stdout.splitlines())
    assert summary["added"] == "2"
    assert len(cli.json("suppressions", "list", "--channel", "news")) == 2


def test_export_round_trip(cli: CLI, chan, tmp_path):
    cli.ok("channels", "create", "--account", "acme", "--name", "copy")
    cli.ok("suppressions", "add", "--channel", "news", "a@example.test", "b@example.test")
    cli.ok("suppressions", "add", "--channel", "news", "c@example.test", "--reason",
           "hard_bounce")
    out = tmp_path / "out.csv"
    res = cli.ok("suppressions", "export", "--channel", "news", str(out))
    assert "exported 3" in res.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["address", "reason", "created_at", "source_message_id"]
    assert [(r["address"], r["reason"]) for r in rows] == [
        ("a@example.test", "manual"), ("b@example.test", "manual"),
        ("c@example.test", "hard_bounce")]
    assert rows[0]["created_at"].endswith("Z")
    cli.ok("suppressions", "import", "--channel", "acme/copy", str(out))
    stdout = cli.ok("suppressions", "export", "--channel", "acme/copy").stdout
    copied = list(csv.DictReader(io.StringIO(stdout)))
    assert [(r["address"], r["reason"]) for r in copied] == [
        (r["address"], r["reason"]) for r in rows]
    as_json = cli.json("suppressions", "export", "--channel", "news")
    assert [r["address"] for r in as_json] == ["a@example.test", "b@example.test",
                                               "c@example.test"]
