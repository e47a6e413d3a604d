"""Credential secrets: generation and hashing."""

from __future__ import annotations

from helo_smtp import credsecret


def test_secrets_never_start_with_a_dash():
    """A leading '-' makes swaks and curl read the secret as an option."""
    secrets = [credsecret.new_secret() for _ in range(2000)]
    assert not any(s.startswith("-") for s in secrets)
    assert all(len(s) == 43 for s in secrets)  # 32 bytes, base64 without padding
    assert len(set(secrets)) == len(secrets)


def test_hash_verifies_only_the_secret():
    secret = credsecret.new_secret()
    stored = credsecret.hash_secret(secret)
    assert secret not in stored
    assert credsecret.verify_secret(secret, stored)
    assert not credsecret.verify_secret(secret + "x", stored)
    assert not credsecret.verify_secret(secret, "md5$00$00")
    assert credsecret.hash_secret(secret) != stored  # a fresh salt each time
