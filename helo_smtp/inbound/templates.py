"""``{{var}}`` placeholders, filled from ``X-Helo-Template-Data`` (pure functions).

Grammar (Mustache's variable tags, the subset Helo documents):

- ``{{ name }}`` inserts the value; in HTML parts it is HTML-escaped, as Mustache does, so data
  cannot inject markup. ``{{{ name }}}`` inserts it unescaped.
- ``name`` is ``[A-Za-z_][A-Za-z0-9_-]*`` with ``.`` between parts for nested objects
  (``{{order.id}}``).
- Values may be strings, numbers, booleans (``true``/``false``) or null (empty). A missing
  name, an object or list value, or any other ``{{`` / ``}}`` left in the text (a broken
  placeholder) is ``templating_error``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from helo_smtp.errors import TemplatingError

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*"
_TAG = re.compile(r"\{\{\{\s*(" + _NAME + r")\s*\}\}\}|\{\{\s*(" + _NAME + r")\s*\}\}")


def _lookup(data: dict[str, Any], name: str) -> str:
    value: Any = data
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TemplatingError()
        value = value[part]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplatingError()


def render(text: str, data: dict[str, Any], html_part: bool = False) -> str:
    """Fill every placeholder in ``text``; raise ``TemplatingError`` on any problem."""
    parts: list[str] = []
    pos = 0
    for m in _TAG.finditer(text):
        if text[m.start() - 1:m.start()] == "{" or text[m.end():m.end() + 1] == "}":
            raise TemplatingError()  # an unbalanced brace next to a tag: {{{name}} or {{a}}}
        parts.append(_literal(text[pos:m.start()]))
        raw_name, name = m.group(1), m.group(2)
        value = _lookup(data, raw_name or name)
        parts.append(html.escape(value) if html_part and name else value)
        pos = m.end()
    parts.append(_literal(text[pos:]))
    return "".join(parts)


def _literal(segment: str) -> str:
    """Text between placeholders; a stray ``{{`` or ``}}`` is a broken placeholder."""
    if "{{" in segment or "}}" in segment:
        raise TemplatingError()
    return segment
