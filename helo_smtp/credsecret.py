"""Credential secrets: generation and hashing.

Secrets are generated here, 32 random bytes (256 bits) in URL-safe base64, never chosen by a
person. For such secrets a slow password hash (bcrypt, scrypt, Argon2) buys nothing: guessing
2^256 values is impossible at any speed, and the slowness would block aiosmtpd's synchronous
authenticator on the event loop. We store HMAC-SHA256(salt, secret) with a per-credential salt,
which is one-way, checks in about a microsecond and is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "hmac-sha256"


def new_secret() -> str:
    """256 random bits, URL-safe base64; never starting with '-', which command-line clients
    (swaks --auth-password, curl -u) would read as an option (costs 0.02 bits of entropy)."""
    while True:
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        if not secret.startswith("-"):
            return secret


def new_username() -> str:
    return "hs_" + secrets.token_hex(8)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{SCHEME}${salt.hex()}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != SCHEME:
        return False
    candidate = hmac.new(salt, secret.encode("utf-8", "surrogateescape"),
                         hashlib.sha256).hexdigest()
    return hmac.compare_digest(candidate, digest)


API_KEY_PREFIX = "helo_"


def api_key(key_id: str, secret: str) -> str:
    """The HTTP send API key as shown once: ``helo_<id>_<secret>`` (SPEC §11)."""
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def split_api_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a presented key, or None when it is not shaped like one of ours.
    The id is hex, so the first ``_`` after the prefix ends it (the secret may contain ``_``)."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 200:
        return None
    key_id, sep, secret = key[len(API_KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret
