"""Queue encryption framing, checked against a reference written here from the spec
(OpenSMTPD crypto.c: 0x01 | 12-byte IV | AES-256-GCM ciphertext | 16-byte tag, no AAD)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from mta.spool import crypto

from .conftest import KEY


def reference_decrypt(key: bytes, data: bytes) -> bytes:
    assert len(key) == 32
    version, iv, ciphertext, tag = data[0], data[1:13], data[13:-16], data[-16:]
    assert version == 1
    return AESGCM(key).decrypt(iv, ciphertext + tag, None)


def reference_encrypt(key: bytes, plain: bytes) -> bytes:
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plain, None)
    return b"\x01" + iv + sealed


@given(st.binary(max_size=5000))
def test_buffer_framing_matches_the_reference(plain: bytes) -> None:
    data = crypto.encrypt(KEY, plain)
    assert len(data) == 1 + 12 + len(plain) + 16
    assert reference_decrypt(KEY, data) == plain
    if plain:
        assert crypto.decrypt(KEY, reference_encrypt(KEY, plain)) == plain


@given(st.lists(st.binary(max_size=3000), max_size=12))
def test_stream_framing_matches_the_reference(chunks: list[bytes]) -> None:
    encryptor = crypto.StreamEncryptor(KEY)
    data = b"".join(encryptor.update(chunk) for chunk in chunks) + encryptor.finalize()
    assert reference_decrypt(KEY, data) == b"".join(chunks)


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 4096))
def test_stream_decryptor_opens_reference_files(plain: bytes, step: int) -> None:
    data = reference_encrypt(KEY, plain)
    decryptor = crypto.StreamDecryptor(KEY, data[:13], data[-16:])
    body = data[13:-16]
    out = b"".join(decryptor.update(body[i : i + step]) for i in range(0, len(body), step))
    assert out + decryptor.finalize() == plain


def test_each_file_has_a_fresh_iv() -> None:
    assert crypto.encrypt(KEY, b"same")[1:13] != crypto.encrypt(KEY, b"same")[1:13]


def test_wrong_key_and_tampering_fail_authentication() -> None:
    data = crypto.encrypt(KEY, b"secret message")
    with pytest.raises(crypto.CryptoError, match="authentication"):
        crypto.decrypt(bytes(32), data)
    for position in range(1, len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises(crypto.CryptoError):
            crypto.decrypt(KEY, bytes(tampered))
    decryptor = crypto.StreamDecryptor(bytes(32), data[:13], data[-16:])
    decryptor.update(data[13:-16])
    with pytest.raises(crypto.CryptoError, match="authentication"):
        decryptor.finalize()


def test_framing_errors() -> None:
    data = crypto.encrypt(KEY, b"x")
    with pytest.raises(crypto.CryptoError, match="version 2"):
        crypto.decrypt(KEY, b"\x02" + data[1:])
    with pytest.raises(crypto.CryptoError, match="too short"):
        crypto.decrypt(KEY, data[:28])
    with pytest.raises(crypto.CryptoError, match="version 2"):
        crypto.StreamDecryptor(KEY, b"\x02" + data[1:13], data[-16:])


def test_key_must_be_32_bytes() -> None:
    assert crypto.check_key(KEY) == KEY
    for bad in (b"", b"k" * 31, b"k" * 33):
        with pytest.raises(ValueError, match="32 bytes"):
            crypto.check_key(bad)
