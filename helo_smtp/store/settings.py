"""Small key/value settings kept in the database (e.g. the generated tracking HMAC key)."""

from __future__ import annotations

import secrets
from typing import Any


class Settings:
    def __init__(self, db: Any) -> None:
        self.db = db

    def get(self, key: str) -> str | None:
        row = self.db.read(lambda c: c.execute(
            "SELECT value FROM settings WHERE key = ?", (key,)).fetchone())
        return row[0] if row else None

    def get_or_create_secret(self, key: str) -> str:
        """A random secret stored once and reused (first writer wins)."""
        value = secrets.token_hex(32)
        self.db.write(lambda c: c.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, value)))
        return self.get(key) or value
