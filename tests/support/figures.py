"""Figures the reliability suite reports (rounds run, messages acknowledged and lost, examples
tried), for docs/reliability.md.

    record("crash_rounds", rounds=3, acknowledged=412, lost=0, duplicated=1)

Each call appends one JSON line to the file named by ``$HELO_FIGURES`` (nothing when unset: the
default suite asserts, the documented command also records), safe under ``pytest -n auto``
(one ``write`` of one line in append mode). Print them as a Markdown table with
``python -m tests.support.figures FILE``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

ENV = "HELO_FIGURES"


def record(name: str, **figures: Any) -> dict[str, Any]:
    """Append ``figures`` under ``name`` to ``$HELO_FIGURES``; returns the row."""
    row = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    path = os.environ.get(ENV)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        line = json.dumps(row, sort_keys=False) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    return row


def table(path: str) -> str:
    """The recorded rows as a Markdown table (one row per record, figures as key=value)."""
    out = ["| test | figures |", "|---|---|"]
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            name = row.pop("test")
            row.pop("at", None)
            out.append(f"| {name} | " + ", ".join(f"{k}={v}" for k, v in row.items()) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(sys.argv[1]))
