"""DKIM's RSA step runs in OpenSSL; the signature bytes are exactly dkimpy's own."""

from __future__ import annotations

import dkim
from dkim import canonicalization
from hypothesis import given
from hypothesis import strategies as st

from helo_smtp import keys
from helo_smtp.models import Domain
from helo_smtp.outbound import dkim as dkim_mod

RAW = (b"From: App <app@sender.test>\r\nTo: someone@example.test\r\nSubject: hello\r\n"
       b"Message-ID: <1@relay.test>\r\n\r\nHello there.\r\n")


def domain(bits: int) -> Domain:
    private_pem, public_b64 = keys.generate_dkim_key(bits)
    return Domain("d", "a", "sender.test", True, "t", "sel1", private_pem, public_b64, 0.0)


class FrozenClock:
    """dkimpy's ``time`` module with a fixed clock: the signature's ``t=`` tag must be the same
    for both signers, however long the pure-Python one takes."""

    def __init__(self, real) -> None:
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def time(self) -> float:
        return 1_790_000_000.0


def test_openssl_signature_is_byte_identical_and_verifies(monkeypatch):
    dkim_mod.install_fast_paths()
    monkeypatch.setattr(dkim, "time", FrozenClock(dkim.time))
    for bits in (1024, 2048):
        dom = domain(bits)
        fast = dkim_mod.sign(RAW, dom)
        monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", dkim_mod._PURE_PYTHON_SIGN)
        slow = dkim_mod.sign(RAW, dom)
        monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", dkim_mod.openssl_sign)
        assert fast == slow
        record = keys.dkim_record(dom.dkim_public_key).encode()

        def dnsfunc(name: bytes, timeout: int = 5, record=record) -> bytes:
            assert name == b"sel1._domainkey.sender.test."
            return record

        assert dkim.verify(fast, dnsfunc=dnsfunc)
        assert not dkim.verify(fast.replace(b"Hello there.", b"Hello there!"), dnsfunc=dnsfunc)


def test_the_relay_signs_with_openssl():
    dkim_mod.install_fast_paths()  # what the runtime does at start (runtime/daemon.py)
    dkim_mod.install_fast_paths()  # twice: still one key cache
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkim_mod.openssl_sign
    assert dkim.parse_pem_private_key.__wrapped__ is dkim_mod._DKIMPY_PARSE_PEM


@given(st.lists(st.sampled_from([b" ", b"\t", b"\r\n", b"a", b"\xc3\xa9", b"  \t "]), max_size=60))
def test_whitespace_compression_is_dkimpys_byte_for_byte(parts):
    text = b"".join(parts)
    assert dkim_mod.compress_whitespace(text) == dkim_mod._DKIMPY_COMPRESS(text)


def test_relaxed_canonicalization_uses_the_fast_compression():
    dkim_mod.install_fast_paths()
    assert canonicalization.compress_whitespace is dkim_mod.compress_whitespace
    body = b"a  b\t\tc \t d e\r\n\t x \r\n\r\n"
    assert canonicalization.Relaxed.canonicalize_body(body) == b"a b c d e\r\n x\r\n"
