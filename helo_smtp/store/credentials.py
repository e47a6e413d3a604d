"""SMTP AUTH credentials: username + secret hash, scoped to a channel or an account."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from helo_smtp import credsecret
from helo_smtp.errors import UsageError
from helo_smtp.models import Credential


def _row(r: sqlite3.Row) -> Credential:
    return Credential(r["id"], r["username"], r["account_id"], r["channel_id"], r["name"],
                      r["created_at"], r["revoked_at"])


class Credentials:
    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, account_id: str, channel_id: str | None, name: str = "",
               username: str | None = None, secret: str | None = None
               ) -> tuple[Credential, str]:
        """Create a credential; returns it with the secret, which is not stored anywhere."""
        secret = secret or credsecret.new_secret()
        cred = Credential(str(uuid.uuid4()), username or credsecret.new_username(), account_id,
                          channel_id, name, time.time())

        def fn(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM credentials WHERE username = ?",
                         (cred.username,)).fetchone():
                raise UsageError(f"username '{cred.username}' already exists")
            c.execute("INSERT INTO credentials (id, username, secret_hash, account_id,"
                      " channel_id, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (cred.id, cred.username, credsecret.hash_secret(secret), account_id,
                       channel_id, name, cred.created_at))

        self.db.write(fn)
        return cred, secret

    def list(self, account_id: str | None = None, include_revoked: bool = False
             ) -> list[Credential]:
        where, args = ["1=1"], []
        if account_id:
            where.append("account_id = ?")
            args.append(account_id)
        if not include_revoked:
            where.append("revoked_at IS NULL")
        sql = f"SELECT * FROM credentials WHERE {' AND '.join(where)} ORDER BY created_at"
        return [_row(r) for r in self.db.read(lambda c: c.execute(sql, args).fetchall())]

    def get(self, ref: str) -> Credential | None:
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM credentials WHERE id = ? OR username = ?", (ref, ref)).fetchone())
        return _row(r) if r else None

    def revoke(self, ref: str) -> Credential:
        cred = self.get(ref)
        if cred is None:
            raise UsageError(f"no credential '{ref}'")
        self.db.write(lambda c: c.execute(
            "UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), cred.id)))
        return self.get(cred.id)  # type: ignore[return-value]

    def lookup(self, username: str) -> tuple[Credential, str] | None:
        """The live credential for ``username`` and its secret hash."""
        r = self.db.read(lambda c: c.execute(
            "SELECT cr.* FROM credentials cr LEFT JOIN channels ch ON ch.id = cr.channel_id"
            " WHERE cr.username = ? AND cr.revoked_at IS NULL"
            " AND (cr.channel_id IS NULL OR ch.deleted_at IS NULL)", (username,)).fetchone())
        return (_row(r), r["secret_hash"]) if r else None
