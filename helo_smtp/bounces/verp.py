"""VERP return paths: ``b+<token>@<bounce domain>``, one per recipient row.

The token is ``<row id in base 36>-<HMAC-SHA256(key, "verp:<id>") truncated to 60 bits, in
base 32>``: about 20 characters, lowercase only (some MTAs fold the local part's case), no
database secret in the clear, and a forged or mistyped token fails the check, so the bounces
listener refuses it at RCPT. Any bounce or complaint that reaches it names its recipient row
without guessing from the bounce text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Protocol

PREFIX = "b+"
SECRET_SETTING = "bounce_secret"
FBL_LOCAL = "fbl"  # fbl@<bounce domain>: feedback-loop reports without a VERP address
_TOKEN = re.compile(r"^([0-9a-z]{1,13})-([a-z2-7]{12})$")


class SecretSource(Protocol):
    def get_or_create_secret(self, key: str) -> str: ...


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _mac(key: bytes, row_id: int) -> str:
    d = hmac.new(key, b"verp:%d" % row_id, hashlib.sha256).digest()
    return base64.b32encode(d[:10]).decode().lower()[:12]


class Verp:
    """Make and check return paths for one bounce domain."""

    def __init__(self, domain: str, key: bytes) -> None:
        self.domain = domain.lower().rstrip(".")
        self.key = key

    @classmethod
    def load(cls, domain: str, secret: str, settings: SecretSource) -> Verp:
        """``[bounces] secret``, or a key generated once into the database."""
        return cls(domain, (secret or settings.get_or_create_secret(SECRET_SETTING)).encode())

    def address(self, row_id: int) -> str:
        return f"{PREFIX}{_base36(row_id)}-{_mac(self.key, row_id)}@{self.domain}"

    def row_id(self, address: str) -> int | None:
        """The recipient row an address of ours names, or None (not ours, or forged)."""
        local, _, domain = address.lower().rpartition("@")
        if domain.rstrip(".") != self.domain or not local.startswith(PREFIX):
            return None
        m = _TOKEN.match(local[len(PREFIX):])
        if m is None:
            return None
        row_id = int(m.group(1), 36)
        return row_id if hmac.compare_digest(m.group(2), _mac(self.key, row_id)) else None

    def is_fbl(self, address: str) -> bool:
        return address.lower() == f"{FBL_LOCAL}@{self.domain}"

    def in_domain(self, address: str) -> bool:
        return address.lower().rpartition("@")[2].rstrip(".") == self.domain
