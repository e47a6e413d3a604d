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
