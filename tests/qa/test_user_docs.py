"""The user's contract lives in the repository (issue #21, item 6): the README links only to
files in it, docs/smtp.md covers every control header the relay reads and every Helo error
code it answers with, and docs/operations.md covers where mail goes, suppressions and
broadcasts."""

from __future__ import annotations

import re
from pathlib import Path

from helo_smtp.errors import CATALOG
from helo_smtp.inbound import controls

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def test_readme_points_only_inside_the_repository():
    readme = _text("README.md")
    assert "SPEC.md" not in readme and "shared folder" not in readme
    for target in LINK.findall(readme):
        if target.startswith(("http://", "https://")):
            continue
        path = target.split("#")[0]
        assert (ROOT / path).exists(), target
    assert "docs/smtp.md" in readme


def test_smtp_md_covers_every_control_header():
    doc = _text("docs/smtp.md").lower()
    source = Path(controls.__file__).read_text(encoding="utf-8")
    names = set(re.findall(r'"(x-(?:helo|pm)-[a-z-]+)"', source))
    assert len(names) >= 12  # the §4 headers and the Postmark aliases
    for name in sorted(names):
        assert name.rstrip("-") in doc, name
    # an example of each X-Helo header as a header line
    for name in sorted(n for n in names if n.startswith("x-helo-")):
        assert re.search(rf"^{re.escape(name.rstrip('-'))}[a-z-]*: \S", doc, re.M), name


def test_smtp_md_names_every_helo_error_code_and_the_idempotency_rules():
    doc = _text("docs/smtp.md")
    coded = [r for r in CATALOG.values() if r.text.startswith(r.name + ":")]
    assert coded
    for r in coded:
        assert r.name in doc, r.name
    for section in ("## Listeners", "## Control headers", "## Replies", "## Limits",
                    "## Idempotency"):
        assert section in doc


def test_operations_md_covers_routing_suppressions_and_broadcasts():
    doc = _text("docs/operations.md")
    for section in ("## Where mail goes", "## Suppressions", "## Broadcasts"):
        assert section in doc
    for word in ("relayhost", "[delivery.routes]", "dev inbox", "suppressions remove",
                 "broadcasts show"):
        assert word in doc, word
