"""Compression then encryption of spool files, self-describing by their first bytes."""

from __future__ import annotations

import gzip
import io
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.spool import seal

from .conftest import KEY
from .test_crypto import reference_decrypt

SETTINGS = [(False, None), (True, None), (False, KEY), (True, KEY)]


def encode(chunks: list[bytes], compress: bool, key: bytes | None) -> bytes:
    encoder = seal.StreamEncoder(compress=compress, key=key)
    return b"".join(encoder.encode(chunk) for chunk in chunks) + encoder.finish()


def decode(data: bytes, key: bytes | None) -> bytes:
    return b"".join(seal.decode_stream(io.BytesIO(data), len(data), key))


@pytest.mark.parametrize(("compress", "key"), SETTINGS)
@settings(max_examples=60)
@given(chunks=st.lists(st.binary(max_size=2000), max_size=8))
def test_stream_round_trip(chunks: list[bytes], compress: bool, key: bytes | None) -> None:
    data = encode(chunks, compress, key)
    assert decode(data, key) == b"".join(chunks)
    assert seal.open_buffer(data, key=key, limit=1 << 20) == b"".join(chunks)


@pytest.mark.parametrize(("compress", "key"), SETTINGS)
@settings(max_examples=60)
@given(content=st.binary(max_size=3000))
def test_buffer_round_trip(content: bytes, compress: bool, key: bytes | None) -> None:
    data = seal.seal_buffer(content, compress=compress, key=key)
    assert seal.open_buffer(data, key=key, limit=1 << 20) == content
    assert decode(data, key) == content


def test_order_is_gzip_then_encryption() -> None:
    content = b"Subject: x\r\n\r\n" + b"hello world\r\n" * 100
    data = encode([content], True, KEY)
    assert data[0] == 1
    inner = reference_decrypt(KEY, data)
    assert inner[:2] == b"\x1f\x8b"
    assert gzip.decompress(inner) == content
    assert gzip.decompress(encode([content], True, None)) == content


def test_ambiguous_raw_content_is_stored_gzipped() -> None:
    for content in (b"\x01abc", b"\x1f\x8bnot really gzip"):
        stored = encode([content], False, None)
        assert stored[:2] == b"\x1f\x8b" and gzip.decompress(stored) == content
        assert seal.seal_buffer(content, compress=False, key=None)[:2] == b"\x1f\x8b"
        assert decode(stored, None) == content
    # Inside encryption only gzip is sniffed, so 0x01 may stay raw but 0x1f may not.
    assert reference_decrypt(KEY, encode([b"\x01abc"], False, KEY)) == b"\x01abc"
    assert reference_decrypt(KEY, encode([b"\x1fabc"], False, KEY))[:2] == b"\x1f\x8b"
    assert encode([b"plain"], False, None) == b"plain"


def test_files_from_other_settings_still_read() -> None:
    content = b"Received: by mx\r\n\r\nbody\r\n"
    for compress, key in SETTINGS:
        data = encode([content], compress, key)
        assert decode(data, KEY) == content


def test_encrypted_file_without_a_key() -> None:
    data = encode([b"secret"], False, KEY)
    with pytest.raises(seal.DecodeError, match="no queue key"):
        decode(data, None)
    with pytest.raises(seal.DecodeError, match="no queue key"):
        seal.open_buffer(data, key=None, limit=100)


@pytest.mark.parametrize("key", [None, KEY])
def test_truncation_and_garbage_are_detected(key: bytes | None) -> None:
    content = bytes(range(256)) * 64
    data = encode([content], True, key)
    for size in (1, 2, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(seal.DecodeError):
            decode(data[:size], key)
    with pytest.raises(seal.DecodeError):
        decode(data + b"\0", key)


def test_gzip_crc_is_checked() -> None:
    data = bytearray(encode([b"hello world" * 10], True, None))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    with pytest.raises(seal.DecodeError, match="gzip"):
        decode(bytes(data), None)
    with pytest.raises(seal.DecodeError, match="gzip"):
        seal.open_buffer(bytes(data), key=None, limit=1000)


def test_two_gzip_members_are_refused() -> None:
    data = gzip.compress(b"one") + gzip.compress(b"two")
    with pytest.raises(seal.DecodeError, match="trailing"):
        decode(data, None)
    with pytest.raises(seal.DecodeError, match="trailing"):
        seal.open_buffer(data, key=None, limit=1000)


def test_buffer_limit_stops_decompression_bombs() -> None:
    bomb = zlib.compress(bytes(10 << 20), 9, seal.GZIP_WBITS)
    with pytest.raises(seal.DecodeError, match="too large"):
        seal.open_buffer(bomb, key=None, limit=1 << 20)


def test_stream_decoding_yields_bounded_chunks() -> None:
    bomb = zlib.compress(bytes(10 << 20), 9, seal.GZIP_WBITS)
    sizes = [len(chunk) for chunk in seal.decode_stream(io.BytesIO(bomb), len(bomb), None)]
    assert sum(sizes) == 10 << 20
    assert max(sizes) <= 64 * 1024


def test_empty_content() -> None:
    for compress, key in SETTINGS:
        assert decode(encode([], compress, key), key) == b""
