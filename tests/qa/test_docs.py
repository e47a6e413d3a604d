"""The generated docs and example config match their sources (click commands, config
declarations, reply catalog). A failure names the file and the command that regenerates it."""

from __future__ import annotations

import pytest

from helo_smtp import config, errors
from helo_smtp.cli import docsgen
from helo_smtp.cli.main import cli

GENERATORS = docsgen.generators(cli)


@pytest.mark.parametrize("rel", sorted(GENERATORS))
def test_generated_file_is_current(rel):
    path = docsgen.ROOT / rel
    assert path.exists(), f"{rel} is missing: run `{docsgen.REGENERATE}`"
    expected = GENERATORS[rel]()
    assert path.read_text(encoding="utf-8") == expected, (
        f"{rel} is stale: run `{docsgen.REGENERATE}` and commit the result")


def test_cli_doc_covers_every_visible_command():
    text = (docsgen.ROOT / "docs" / "cli.md").read_text()
    paths = [p for p, _, _ in docsgen.commands(cli)]
    assert "helo-smtp queue purge" in paths and "helo-smtp docs" not in paths
    for p in paths:
        assert f"\n## {p}\n" in text, p


def test_settings_doc_lists_every_setting_with_its_real_default():
    text = (docsgen.ROOT / "docs" / "settings.md").read_text()
    for key, _, _, help_text in config.settings_table():
        assert f"| `{key.rsplit('.', 1)[-1]}` |" in text and help_text.replace("|", "\\|") in text
    # The broadcast pool's defaults differ from the transactional pool's: both are right.
    rows = {r["key"]: r["default"] for r in docsgen.settings()}
    assert rows["pools.broadcast.rate"] == config.Config().pools.broadcast.rate == 50.0
    assert rows["pools.transactional.rate"] == 0.0


def test_errors_doc_has_every_catalog_reply():
    text = (docsgen.ROOT / "docs" / "errors.md").read_text()
    for r in errors.CATALOG.values():
        assert f"| `{r.name}` | {r.code} | {r.status} |" in text


def test_generation_is_independent_of_the_terminal(monkeypatch):
    before = docsgen.cli_md(cli)
    monkeypatch.setenv("COLUMNS", "40")
    assert docsgen.cli_md(cli) == before


def test_check_reports_a_stale_file(tmp_path):
    for rel, gen in GENERATORS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(gen())
    assert docsgen.stale(cli, tmp_path) == []
    (tmp_path / "docs" / "errors.md").write_text("old\n")
    assert docsgen.stale(cli, tmp_path) == ["docs/errors.md"]
    assert docsgen.write(cli, tmp_path) == ["docs/errors.md"]
    assert docsgen.stale(cli, tmp_path) == []


def test_hidden_docs_command_checks_without_writing():
    from click.testing import CliRunner

    before = {rel: (docsgen.ROOT / rel).stat().st_mtime_ns for rel in GENERATORS}
    res = CliRunner().invoke(cli, ["docs", "--check"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "up to date"
    assert {rel: (docsgen.ROOT / rel).stat().st_mtime_ns for rel in GENERATORS} == before
    assert "docs" not in CliRunner().invoke(cli, ["--help"]).stdout.split("Commands:")[1]
