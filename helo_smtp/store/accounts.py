"""Accounts: create, look up by id or name, change status."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from helo_smtp.errors import UsageError
from helo_smtp.models import Account, AccountStatus


def _row(r: sqlite3.Row) -> Account:
    return Account(r["id"], r["name"], AccountStatus(r["status"]), r["sends_used"],
                   r["created_at"])


class Accounts:
    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, name: str, status: AccountStatus = AccountStatus.ACTIVE) -> Account:
        name = name.strip()
        if not name:
            raise UsageError("account name must not be empty")
        acc = Account(str(uuid.uuid4()), name, status, 0, time.time())

        def fn(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"account '{name}' already exists")
            c.execute("INSERT INTO accounts (id, name, status, sends_used, created_at)"
                      " VALUES (?, ?, ?, 0, ?)", (acc.id, name, status.value, acc.created_at))

        self.db.write(fn)
        return acc

    def get(self, ref: str) -> Account | None:
        """By id or by name."""
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM accounts WHERE id = ? OR name = ?", (ref, ref)).fetchone())
        return _row(r) if r else None

    def require(self, ref: str) -> Account:
        acc = self.get(ref)
        if acc is None:
            raise UsageError(f"no account '{ref}'")
        return acc

    def list(self) -> list[Account]:
        rows = self.db.read(lambda c: c.execute(
            "SELECT * FROM accounts ORDER BY created_at").fetchall())
        return [_row(r) for r in rows]

    def set_status(self, ref: str, status: AccountStatus) -> Account:
        acc = self.require(ref)
        self.db.write(lambda c: c.execute("UPDATE accounts SET status = ? WHERE id = ?",
                                          (status.value, acc.id)))
        return self.require(acc.id)
