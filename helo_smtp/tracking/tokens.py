"""Tracking tokens (SPEC §7, §8): opaque, authenticated, one per (kind, message, recipient[, url]).

Tokens are AES-256-GCM (``cryptography``) over a compact payload (kind, message UUID,
recipient, and for clicks the target URL), keyed by HKDF-SHA256 from ``[http] secret`` or the
generated ``tracking_key`` setting. GCM authenticates what it encrypts, so a token cannot be
altered (another recipient, another URL) without failing to decrypt, and no id is in the clear.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from helo_smtp.config import HTTPConfig

OPEN, CLICK, UNSUBSCRIBE = "o", "c", "u"
_KINDS = frozenset({OPEN, CLICK, UNSUBSCRIBE})
_NONCE = 12
_TAG = 16
MAX_TOKEN_CHARS = 6000  # longer path segments are refused before any crypto
SECRET_SETTING = "tracking_key"


class SecretSource(Protocol):
    def get_or_create_secret(self, key: str) -> str: ...


def tracking_secret(http_cfg: HTTPConfig, settings: SecretSource) -> bytes:
    """``[http] secret``, or a random key generated once into the database."""
    return (http_cfg.secret or settings.get_or_create_secret(SECRET_SETTING)).encode()


# ---- tokens ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # OPEN, CLICK or UNSUBSCRIBE
    message_id: str
    recipient: str
    url: str = ""  # clicks only: the one URL this token may redirect to


@functools.lru_cache(maxsize=8)
def _aead(secret: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"helo-smtp",
               info=b"tracking-token-v1").derive(secret)
    return AESGCM(key)


def make_token(secret: bytes, kind: str, message_id: str, recipient: str, url: str = "") -> str:
    """An opaque, URL-safe token for (kind, message, recipient[, url])."""
    if kind not in _KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    payload = (kind.encode() + uuid.UUID(message_id).bytes + recipient.encode()
               + b"\0" + url.encode())
    nonce = os.urandom(_NONCE)
    return _b64(nonce + _aead(secret).encrypt(nonce, payload, b"helo1"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def read_token(secret: bytes, token: str, kind: str) -> Token | None:
    """The token's contents, or None when it is malformed, forged, altered or of another kind."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if _b64(sealed) != token or len(sealed) < _NONCE + _TAG + 18:  # one spelling per token
        return None
    try:
        payload = _aead(secret).decrypt(sealed[:_NONCE], sealed[_NONCE:], b"helo1")
    except InvalidTag:
        return None
    rest = payload[17:]
    if payload[:1].decode("latin-1") != kind or b"\0" not in rest:
        return None
    recipient, _, url = rest.partition(b"\0")
    try:
        return Token(kind, str(uuid.UUID(bytes=payload[1:17])), recipient.decode(), url.decode())
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class Links:
    """URLs on the HTTP side for one (message, recipient)."""

    base: str  # public_url without a trailing slash
    secret: bytes
    message_id: str
    recipient: str

    def open_url(self) -> str:
        return f"{self.base}/o/{self._t(OPEN)}.gif"

    def click_url(self, url: str) -> str:
        return f"{self.base}/c/{self._t(CLICK, url)}"

    def unsubscribe_url(self) -> str:
        return f"{self.base}/u/{self._t(UNSUBSCRIBE)}"

    def unsubscribe_mailto(self, address: str) -> str:
        subject = quote(f"unsubscribe {self._t(UNSUBSCRIBE)}")
        return f"mailto:{address}?subject={subject}"

    def _t(self, kind: str, url: str = "") -> str:
        return make_token(self.secret, kind, self.message_id, self.recipient, url)
