"""Bench-only experiments on helo-smtp, loaded into the relay process before it starts.

``fast_dkim``: dkimpy signs with its own pure-Python RSA (``dkim.crypto.rsa_decrypt``: two
1024-bit ``pow`` calls per message, ~6 ms here). This swaps in OpenSSL's RSA through
``cryptography`` for the same PKCS#1 v1.5 signature (byte-identical output: RSASSA-PKCS1-v1_5 is
deterministic), so the report can show what the relay would do without that cost. It patches a
library in one process for one measurement; it is not how the relay should ship the fix.
"""

from __future__ import annotations

from typing import Any

_KEYS: dict[int, Any] = {}


def _key(pk: dict[str, int]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = _KEYS.get(pk["modulus"])
    if key is None:
        pub = rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"])
        key = rsa.RSAPrivateNumbers(pk["prime1"], pk["prime2"], pk["privateExponent"],
                                    pk["exponent1"], pk["exponent2"], pk["coefficient"],
                                    pub).private_key()
        _KEYS[pk["modulus"]] = key
    return key


def _sign(h: Any, pk: dict[str, int]) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    algo = hashes.SHA256() if h.name == "sha256" else hashes.SHA1()
    return _key(pk).sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(algo))


def fast_dkim() -> None:
    import dkim

    dkim.RSASSA_PKCS1_v1_5_sign = _sign
