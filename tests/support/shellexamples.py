"""The shell commands the README and docs/ show, and checks that each parses.

``examples()`` reads every ```sh / ```bash / ```console block of README.md and docs/*.md, and
the ``Example:`` lines of the help texts that docs/cli.md carries, and splits them into simple
commands (``a && b; c | d`` is three or four). ``<placeholder>`` words stand for a value the
reader fills in; they become ``PLACEHOLDER`` before parsing.

``parse_helo_smtp(argv)`` runs click's own parser over the whole command path (options, their
types and choices, required arguments) without invoking the command; ``swaks_dump(argv)``
runs the real swaks with ``--dump``, which validates every option and exits before connecting.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^\s*```(\w*)\s*$")
_PLACEHOLDER = re.compile(r"<([A-Za-z][\w.-]*)>")
_OPERATORS = {"&&", "||", ";", "|", "&"}


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {shlex.join(self.argv)}"


def _blocks(path: Path) -> list[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of each fenced block."""
    out, lang, start, lines = [], None, 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line)
        if m and lang is None:
            lang, start, lines = m.group(1) or "text", n + 1, []
        elif m:
            out.append((start, lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def _example_lines(lines: list[str]) -> list[str]:
    """The indented lines under 'Example:' in a help text."""
    out, taking = [], False
    for line in lines:
        if line.strip() == "Example:":
            taking = True
        elif taking and line.startswith("    ") and line.strip():
            out.append(line.strip())
        else:
            taking = False
    return out


def _commands(script: str) -> list[list[str]]:
    lex = shlex.shlex(_PLACEHOLDER.sub(lambda m: m.group(1).upper().replace("-", "_"),
                                       script), posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    out: list[list[str]] = [[]]
    for tok in lex:
        if tok in _OPERATORS or tok == "\n":
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


def _scripts(lines: list[str]) -> list[tuple[int, str]]:
    """Logical lines: backslash continuations joined; comment-only lines dropped."""
    out, buf, first = [], "", 0
    for i, line in enumerate(lines):
        if not buf:
            first = i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip() and not buf.strip().startswith("#"):
            out.append((first, buf.lstrip("$ ")))
        buf = ""
    return out


def examples() -> list[Example]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    out = []
    for f in files:
        rel = str(f.relative_to(ROOT))
        for start, lang, lines in _blocks(f):
            if lang in ("sh", "bash", "console", "shell"):
                scripts = _scripts(lines)
            elif lang == "text" and rel == "docs/cli.md":
                scripts = [(0, x) for x in _example_lines(lines)]
            else:
                continue
            for offset, script in scripts:
                out += [Example(rel, start + offset, argv) for argv in _commands(script)]
    return out


def program(argv: list[str]) -> tuple[str, list[str]]:
    """(program, its arguments) past ``VAR=value``, ``sudo -u USER [--preserve-env=...]``."""
    i = 0
    while i < len(argv) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[i]):
        i += 1
    if i < len(argv) and argv[i] == "sudo":
        i += 1
        while i < len(argv) and argv[i].startswith("-"):
            i += 2 if argv[i] in ("-u", "-g") else 1
    if i >= len(argv):
        return "", []
    return Path(argv[i]).name, argv[i + 1:]


def parse_helo_smtp(args: list[str]) -> click.Command:
    """Parse ``helo-smtp ARGS`` down to the leaf command; raises click's UsageError."""
    from helo_smtp.cli.main import cli

    ctx = cli.make_context("helo-smtp", list(args), resilient_parsing=False)
    cmd: click.Command = cli
    while isinstance(cmd, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            break
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return cmd


def swaks_dump(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--dump", *args], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
