"""DKIM signing (RFC 6376) with dkimpy, relaxed/relaxed, over the final message bytes.

The signing domain is the ``From:`` header's domain when the sending account owns it with a
key (so the signature aligns for DMARC, RFC 7489 §3.1.1), else the envelope sender's domain,
else nothing is signed. Headers signed: dkimpy's RFC 6376 §5.4.1 list present in the message
(``From`` signed twice so none can be added), plus ``List-Unsubscribe-Post``, which RFC 8058 §4
requires under the signature. Signing runs after per-recipient personalization, so each
personalized copy carries its own valid signature.

Nothing is stripped here: the stored bytes already lack the control headers.

The RSA step runs in OpenSSL (``cryptography``). dkimpy computes RSASSA-PKCS1-v1_5 with its own
pure-Python big-number code (about 6 ms per 1024-bit signature here, holding the GIL: the
largest single cost of a delivery in the benchmarks) and offers no hook for another signer but
its module-level ``RSASSA_PKCS1_v1_5_sign``, which we replace. PKCS#1 v1.5 signatures are
deterministic (RFC 8017 §8.2), so the bytes are identical to dkimpy's own: a test checks that.
Two more of dkimpy's module functions are swapped for faster equivalents below (the key parse,
cached; the whitespace compression of relaxed canonicalization), each checked against the
original by a test.
"""

from __future__ import annotations

import functools
import logging
import time
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim import canonicalization

from helo_smtp.models import Domain, address_domain
from helo_smtp.ports import SigningKeys

log = logging.getLogger("helo_smtp.delivery")

KEY_CACHE_SECONDS = 60.0  # a rotated key is used within a minute
CANONICALIZE = (b"relaxed", b"relaxed")
EXTRA_SIGNED = (b"list-unsubscribe-post",)


_OPENSSL_KEYS: dict[int, rsa.RSAPrivateKey] = {}  # modulus -> key (a handful of domains)
_PURE_PYTHON_SIGN = dkim.RSASSA_PKCS1_v1_5_sign
_DKIMPY_PARSE_PEM = dkim.parse_pem_private_key


def _openssl_key(pk: dict[str, int]) -> rsa.RSAPrivateKey:
    key = _OPENSSL_KEYS.get(pk["modulus"])
    if key is None:
        public = rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"])
        key = rsa.RSAPrivateNumbers(pk["prime1"], pk["prime2"], pk["privateExponent"],
                                    pk["exponent1"], pk["exponent2"], pk["coefficient"],
                                    public).private_key()
        if len(_OPENSSL_KEYS) > 1024:
            _OPENSSL_KEYS.clear()
        _OPENSSL_KEYS[pk["modulus"]] = key
    return key


def openssl_sign(h: Any, pk: dict[str, int]) -> bytes:
    """dkimpy's ``RSASSA_PKCS1_v1_5_sign(hash_object, key_dict)``, computed by OpenSSL."""
    algorithm = hashes.SHA256() if h.name == "sha256" else hashes.SHA1()
    return _openssl_key(pk).sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


# Relaxed canonicalization (RFC 6376 §3.4.4) turns every run of spaces and tabs into one space.
# dkimpy's ``re.sub(b"[\t ]+", b" ", ...)`` runs the regex engine over the whole body and
# "replaces" each lone space by itself; two bytes.replace passes in C give the same bytes at
# a tenth of the cost.
_DKIMPY_COMPRESS = canonicalization.compress_whitespace


def compress_whitespace(content: bytes) -> bytes:
    """dkimpy's ``compress_whitespace``: every run of spaces and tabs becomes one space."""
    content = content.replace(b"\t", b" ")
    while b"  " in content:  # each pass halves every run
        content = content.replace(b"  ", b" ")
    return content


def install_fast_paths() -> None:
    """Make dkimpy sign with OpenSSL, parse each key once and compress whitespace in C.

    The signatures are byte for byte dkimpy's own (``tests/unit/test_dkim_signer.py``). This
    patches the ``dkim`` module for the whole process, so it is the runtime's call
    (``runtime/daemon.py``, at start), never a side effect of importing this module. Safe to
    call again."""
    dkim.RSASSA_PKCS1_v1_5_sign = openssl_sign
    # dkimpy parses the PEM key (base64 and ASN.1 in pure Python) on every signature: a fifth
    # of the cost of signing a 4 KiB message. A domain's key is the same bytes from one
    # message to the next, so parse each once. The parsed dict is only read (by
    # ``openssl_sign``).
    if dkim.parse_pem_private_key is _DKIMPY_PARSE_PEM:
        dkim.parse_pem_private_key = functools.lru_cache(maxsize=1024)(_DKIMPY_PARSE_PEM)
    canonicalization.compress_whitespace = compress_whitespace


def from_domain(raw: bytes) -> str:
    """The domain of the first ``From:`` address ('' when there is none)."""
    headers = BytesHeaderParser().parsebytes(raw)
    values = [str(v) for v in headers.get_all("From", [])]
    for _, addr in getaddresses(values):
        if "@" in addr:
            return address_domain(addr)
    return ""


def sign(raw: bytes, domain: Domain) -> bytes:
    """``raw`` with a DKIM-Signature header for ``domain`` prepended."""
    d = dkim.DKIM(raw, linesep=b"\r\n")
    include = d.default_sign_headers()
    include += [name for name, _ in d.headers if name.lower() in EXTRA_SIGNED]
    header = d.sign(domain.dkim_selector.encode(), domain.name.encode("idna"),
                    domain.dkim_private_key.encode(), canonicalize=CANONICALIZE,
                    include_headers=include)
    return header + raw


class Signer:
    """Finds the key for a message and signs it; keys are cached for a minute."""

    def __init__(self, domains: SigningKeys) -> None:
        self.domains = domains  # store.domains
        self._keys: dict[tuple[str, str], tuple[float, Domain | None]] = {}

    def key_for(self, account_id: str, name: str) -> Domain | None:
        if not name:
            return None
        hit = self._keys.get((account_id, name))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        dom = self.domains.get(name)
        if dom is not None and (dom.account_id != account_id or not dom.dkim_private_key):
            dom = None
        self._keys[(account_id, name)] = (time.monotonic() + KEY_CACHE_SECONDS, dom)
        return dom

    def sign(self, raw: bytes, account_id: str, sender: str) -> bytes:
        """Signed bytes, or ``raw`` unchanged when no key applies or signing fails."""
        dom = (self.key_for(account_id, from_domain(raw))
               or self.key_for(account_id, address_domain(sender)))
        if dom is None:
            return raw
        try:
            return sign(raw, dom)
        except dkim.DKIMException as exc:
            # A broken key must not stop delivery; the operator sees it in the log.
            log.error("event=dkim_failed domain=%s error=%s", dom.name,
                      " ".join(str(exc).split()))
            return raw
