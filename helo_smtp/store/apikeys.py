"""HTTP send API keys (SPEC §11): ``helo_<id>_<secret>``; the id finds the row, the secret is
stored only as a hash (``credsecret``, as SMTP credentials are) and compared in constant time."""

from __future__ import annotations

import secrets
import time
from typing import Any

from helo_smtp import credsecret
from helo_smtp.errors import UsageError
from helo_smtp.models import ApiKey


def _row(r: Any) -> ApiKey:
    return ApiKey(r["id"], r["account_id"], r["channel_id"], r["name"], r["created_at"],
                  r["last_used_at"], r["revoked_at"])


class ApiKeys:
    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, account_id: str, channel_id: str | None, name: str = ""
               ) -> tuple[ApiKey, str]:
        """A new key and its full text, which is not stored anywhere (print it once)."""
        key = ApiKey(secrets.token_hex(8), account_id, channel_id, name, time.time())
        secret = credsecret.new_secret()
        self.db.write(lambda c: c.execute(
            "INSERT INTO api_keys (id, secret_hash, account_id, channel_id, name, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)", (key.id, credsecret.hash_secret(secret), account_id,
                                           channel_id, name, key.created_at)))
        return key, credsecret.api_key(key.id, secret)

    def list(self, account_id: str | None = None, include_revoked: bool = False
             ) -> list[ApiKey]:
        where, args = ["1=1"], []
        if account_id:
            where.append("account_id = ?")
            args.append(account_id)
        if not include_revoked:
            where.append("revoked_at IS NULL")
        sql = f"SELECT * FROM api_keys WHERE {' AND '.join(where)} ORDER BY created_at"
        return [_row(r) for r in self.db.read(lambda c: c.execute(sql, args).fetchall())]

    def get(self, key_id: str) -> ApiKey | None:
        r = self.db.read(lambda c: c.execute(
            "SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone())
        return _row(r) if r else None

    def revoke(self, key_id: str) -> ApiKey:
        if self.get(key_id) is None:
            raise UsageError(f"no API key '{key_id}'")
        self.db.write(lambda c: c.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), key_id)))
        return self.get(key_id)  # type: ignore[return-value]

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The live key and its secret hash (revoked keys and deleted channels: None)."""
        r = self.db.read(lambda c: c.execute(
            "SELECT k.* FROM api_keys k LEFT JOIN channels ch ON ch.id = k.channel_id"
            " WHERE k.id = ? AND k.revoked_at IS NULL"
            " AND (k.channel_id IS NULL OR ch.deleted_at IS NULL)", (key_id,)).fetchone())
        return (_row(r), r["secret_hash"]) if r else None

    def touch(self, key_id: str, when: float) -> None:
        self.db.write(lambda c: c.execute(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ?", (when, key_id)))
