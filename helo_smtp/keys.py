"""DKIM key pairs, verification tokens and the DNS records a domain owner publishes."""

from __future__ import annotations

import base64
import secrets
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

VERIFY_PREFIX = "helo-verify="


def new_verify_token() -> str:
    return secrets.token_hex(16)


def new_selector() -> str:
    """Selectors name the key's month, so a rotation gets a fresh name (RFC 6376 §3.1)."""
    return "helo" + time.strftime("%Y%m", time.gmtime()) + secrets.token_hex(2)


def generate_dkim_key(bits: int = 2048) -> tuple[str, str]:
    """(private key PEM, public key as base64 DER SubjectPublicKeyInfo for the p= tag)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, base64.b64encode(public_der).decode()


def dkim_record(public_b64: str) -> str:
    return f"v=DKIM1; k=rsa; p={public_b64}"


def dns_records(domain: str, verify_token: str, selector: str, public_b64: str
                ) -> list[tuple[str, str, str]]:
    """(name, type, value) of every TXT record the owner of ``domain`` publishes."""
    return [
        (f"_helo.{domain}", "TXT", VERIFY_PREFIX + verify_token),
        (f"{selector}._domainkey.{domain}", "TXT", dkim_record(public_b64)),
    ]
