"""A self-signed TLS certificate so a fresh install can offer STARTTLS and port 465 at once.

For local use and first runs only: production replaces it with a certificate from a CA (the
files named by ``[tls] cert_file`` / ``key_file``). RSA 2048 rather than ECDSA because the
relay's clients are legacy applications, and RSA is what every TLS stack still speaks.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825


@dataclass(frozen=True, slots=True)
class CertResult:
    cert_file: str
    key_file: str
    created: bool  # False: both files were already there and were left alone
    names: tuple[str, ...] = ()


def subject_names(hostname: str) -> list[x509.GeneralName]:
    """SAN entries: the configured hostname, ``localhost`` and ``127.0.0.1`` (no duplicates)."""
    out: list[x509.GeneralName] = []
    for name in (hostname, "localhost", "127.0.0.1"):
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in out:
            out.append(entry)
    return out


def build(hostname: str, days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new self-signed server certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "helo-smtp self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(subject_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure(cert_file: str, key_file: str, hostname: str) -> CertResult:
    """Create the pair unless both files exist; never overwrite either.

    One file without the other is an error (``FileExistsError``): replacing the survivor would
    silently break a certificate someone installed.
    """
    cert_p, key_p = Path(cert_file), Path(key_file)
    if cert_p.exists() and key_p.exists():
        return CertResult(cert_file, key_file, False)
    for present, missing in ((cert_p, key_p), (key_p, cert_p)):
        if present.exists():
            raise FileExistsError(f"{present} exists but {missing} does not; supply the "
                                  "missing file or move the other aside")
    cert_pem, key_pem = build(hostname)
    key_p.parent.mkdir(parents=True, exist_ok=True)
    cert_p.parent.mkdir(parents=True, exist_ok=True)
    _write_new(key_p, key_pem, 0o600)  # the key is readable by the relay's user only
    _write_new(cert_p, cert_pem, 0o644)
    names = tuple(str(n.value) for n in subject_names(hostname))
    return CertResult(cert_file, key_file, True, names)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet (O_EXCL: a concurrent init cannot clobber it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
