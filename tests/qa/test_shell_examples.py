"""Every swaks and helo-smtp command that README.md and docs/ show parses as written: click's
own parser for helo-smtp (options, types, choices, required arguments), Debian's swaks with
``--dump`` (every option validated, nothing sent). The quick start itself runs end to end in
tests/ops/test_quickstart.py."""

from __future__ import annotations

import re

import click
import pytest

from tests.support.shellexamples import examples, parse_helo_smtp, program, swaks_dump

ALL = examples()
HELO = [e for e in ALL if program(e.argv)[0] == "helo-smtp"]
SWAKS = [e for e in ALL if program(e.argv)[0] == "swaks"]


def test_the_docs_show_commands_of_both_kinds():
    files = {e.file for e in HELO}
    assert {"README.md", "docs/cli.md", "docs/operations.md"} <= files
    assert any(e.file == "README.md" for e in SWAKS)


@pytest.mark.parametrize("example", HELO, ids=str)
def test_helo_smtp_example_parses(example, tmp_path, monkeypatch):
    _, args = program(example.argv)
    monkeypatch.chdir(tmp_path)  # a file argument (bounces.csv) is the reader's own file
    for arg in args:
        if re.fullmatch(r"[\w.-]+\.(csv|txt|json)", arg):
            (tmp_path / arg).write_text("")
    try:
        parse_helo_smtp(args)
    except click.exceptions.Exit:  # --help / --version: parsed, and they exit
        pass
    except click.UsageError as exc:
        pytest.fail(f"{example}: {exc.format_message()}")


@pytest.mark.parametrize("example", SWAKS, ids=str)
def test_swaks_example_parses(example):
    _, args = program(example.argv)
    done = swaks_dump(args)
    assert done.returncode == 0, f"{example}: {done.stdout[-300:]} {done.stderr[-300:]}"
    assert "Data left in option list" not in done.stdout + done.stderr


def test_the_old_quick_start_would_have_failed():
    """The check has teeth: the README's swaks of before (--tls-verify=0) is refused."""
    done = swaks_dump(["--server", "127.0.0.1:2525", "--tls", "--tls-verify=0",
                       "--to", "someone@example.com"])
    assert done.returncode != 0
    assert "Data left in option list" in done.stdout + done.stderr
