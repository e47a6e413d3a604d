"""Sending domains of an account, with verification state and the DKIM key pair."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from helo_smtp.errors import UsageError
from helo_smtp.models import Domain


def _row(r: sqlite3.Row) -> Domain:
    return Domain(r["id"], r["account_id"], r["name"], bool(r["verified"]), r["verify_token"],
                  r["dkim_selector"], r["dkim_private_key"], r["dkim_public_key"],
                  r["created_at"], r["verified_at"])


class Domains:
    def __init__(self, db: Any) -> None:
        self.db = db

    def add(self, account_id: str, name: str, verify_token: str, selector: str,
            private_pem: str, public_b64: str) -> Domain:
        name = name.lower().rstrip(".")
        dom = Domain(str(uuid.uuid4()), account_id, name, False, verify_token, selector,
                     private_pem, public_b64, time.time())

        def fn(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"domain '{name}' already exists")
            c.execute(
                "INSERT INTO domains (id, account_id, name, verified, verify_token,"
                " dkim_selector, dkim_private_key, dkim_public_key, created_at)"
                " VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)",
                (dom.id, account_id, name, verify_token, selector, private_pem, public_b64,
                 dom.created_at))

        self.db.write(fn)
        return dom

    def get(self, ref: str) -> Domain | None:
        """By id or by name."""
        ref_l = ref.lower().rstrip(".")
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM domains WHERE id = ? OR name = ?", (ref, ref_l)).fetchone())
        return _row(r) if r else None

    def require(self, ref: str) -> Domain:
        dom = self.get(ref)
        if dom is None:
            raise UsageError(f"no domain '{ref}'")
        return dom

    def list(self, account_id: str | None = None) -> list[Domain]:
        sql, args = "SELECT * FROM domains", ()
        if account_id:
            sql, args = sql + " WHERE account_id = ?", (account_id,)
        rows = self.db.read(lambda c: c.execute(sql + " ORDER BY name", args).fetchall())
        return [_row(r) for r in rows]

    def set_verified(self, domain_id: str, verified: bool = True) -> None:
        self.db.write(lambda c: c.execute(
            "UPDATE domains SET verified = ?, verified_at = ? WHERE id = ?",
            (int(verified), time.time() if verified else None, domain_id)))

    def rotate_dkim(self, domain_id: str, selector: str, private_pem: str,
                    public_b64: str) -> None:
        self.db.write(lambda c: c.execute(
            "UPDATE domains SET dkim_selector = ?, dkim_private_key = ?, dkim_public_key = ?"
            " WHERE id = ?", (selector, private_pem, public_b64, domain_id)))

    def verified_for(self, account_id: str, name: str) -> Domain | None:
        """The account's verified domain of that name, or None."""
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM domains WHERE name = ? AND account_id = ? AND verified = 1",
            (name.lower().rstrip("."), account_id)).fetchone())
        return _row(r) if r else None
