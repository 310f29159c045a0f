"""Compression and encryption of spool files, as OpenSMTPD orders them: gzip first,
then AES-256-GCM (:mod:`mta.spool.crypto`).

Every stored file says what it is by its first bytes, so a queue written with
other ``queue compression`` / ``queue encryption`` settings still reads back:
``0x01`` is encrypted (its plaintext is then gzip or raw), ``1f 8b`` is gzip,
anything else is raw.  Writers keep that unambiguous: raw content that would
itself start with ``0x01`` or ``0x1f`` is stored gzip'd instead.

This module does buffers (envelope files) and incremental encoding and decoding
(message files, whose size is not bounded by memory).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

from mta.spool import crypto

__all__ = [
    "DecodeError",
    "StreamEncoder",
    "decode_stream",
    "open_buffer",
    "seal_buffer",
]

GZIP_WBITS = 16 + zlib.MAX_WBITS
GZIP_MAGIC = b"\x1f\x8b"
_AMBIGUOUS = (crypto.VERSION, GZIP_MAGIC[0])
_CHUNK = 64 * 1024
_LEVEL = 6


class DecodeError(ValueError):
    """The bytes are not a valid spool file (bad gzip, bad tag, no key...)."""


def _use_gzip(first: bytes, *, compress: bool, encrypted: bool) -> bool:
    """Whether to gzip content starting with ``first``: when asked to, or when the
    raw content would look like an encoded file."""
    if compress or not first:
        return compress
    if encrypted:  # only the inner layer is sniffed: gzip or not
        return first[0] == GZIP_MAGIC[0]
    return first[0] in _AMBIGUOUS


def seal_buffer(data: bytes, *, compress: bool, key: bytes | None) -> bytes:
    """Encode a whole buffer for the spool."""
    if _use_gzip(data[:1], compress=compress, encrypted=key is not None):
        data = zlib.compress(data, _LEVEL, GZIP_WBITS)
    if key is not None:
        data = crypto.encrypt(key, data)
    return data


def _gunzip_all(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(GZIP_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodeError(f"bad gzip data: {exc}") from None
    if len(out) > limit:
        raise DecodeError("decompressed data too large")
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise DecodeError("truncated gzip data or trailing garbage")
    return out


def open_buffer(data: bytes, *, key: bytes | None, limit: int) -> bytes:
    """Decode a buffer written by :func:`seal_buffer` (with any settings)."""
    if data[:1] == bytes([crypto.VERSION]):
        if key is None:
            raise DecodeError("file is encrypted and no queue key is configured")
        try:
            data = crypto.decrypt(key, data)
        except crypto.CryptoError as exc:
            raise DecodeError(str(exc)) from None
    if data[:1] == GZIP_MAGIC[:1]:
        data = _gunzip_all(data, limit)
    if len(data) > limit:
        raise DecodeError("file too large")
    return data


class StreamEncoder:
    """Encode a message as it arrives: :meth:`encode` returns the bytes to write
    for each chunk (often none), :meth:`finish` the tail.  Memory stays bounded."""

    __slots__ = ("_compress", "_crypt", "_deflater", "_started")

    def __init__(self, *, compress: bool, key: bytes | None) -> None:
        self._compress = compress
        self._crypt = crypto.StreamEncryptor(key) if key is not None else None
        self._deflater: zlib._Compress | None = None
        self._started = False

    def _start(self, first: bytes) -> None:
        self._started = True
        if _use_gzip(first[:1], compress=self._compress, encrypted=self._crypt is not None):
            self._deflater = zlib.compressobj(_LEVEL, zlib.DEFLATED, GZIP_WBITS)

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        if not self._started:
            self._start(data)
        if self._deflater is not None:
            data = self._deflater.compress(data)
        if self._crypt is not None:
            data = self._crypt.update(data)
        return data

    def finish(self) -> bytes:
        if not self._started:
            self._start(b"")
        data = self._deflater.flush() if self._deflater is not None else b""
        if self._crypt is not None:
            data = self._crypt.update(data) + self._crypt.finalize()
        return data


def _read_exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise DecodeError("file changed or truncated while reading")
    return data


def _ciphertext(file: BinaryIO, size: int, key: bytes | None) -> Iterator[bytes]:
    """Plaintext of an encrypted file; the last step checks the tag."""
    if key is None:
        raise DecodeError("file is encrypted and no queue key is configured")
    if size < crypto.OVERHEAD:
        raise DecodeError("encrypted file too short")
    header = _read_exactly(file, crypto.HEADER_SIZE)
    file.seek(size - crypto.TAG_SIZE)
    tag = _read_exactly(file, crypto.TAG_SIZE)
    file.seek(crypto.HEADER_SIZE)
    try:
        decryptor = crypto.StreamDecryptor(key, header, tag)
    except crypto.CryptoError as exc:
        raise DecodeError(str(exc)) from None
    remaining = size - crypto.OVERHEAD
    while remaining:
        chunk = _read_exactly(file, min(_CHUNK, remaining))
        remaining -= len(chunk)
        yield decryptor.update(chunk)
    try:
        yield decryptor.finalize()
    except crypto.CryptoError as exc:
        raise DecodeError(str(exc)) from None


def _raw(file: BinaryIO, size: int) -> Iterator[bytes]:
    remaining = size
    while remaining:
        chunk = _read_exactly(file, min(_CHUNK, remaining))
        remaining -= len(chunk)
        yield chunk


def _gunzip(chunks: Iterator[bytes], first: bytes) -> Iterator[bytes]:
    inflater = zlib.decompressobj(GZIP_WBITS)
    pending = first
    try:
        while True:
            while pending:
                if inflater.eof:
                    raise DecodeError("trailing garbage after gzip data")
                out = inflater.decompress(pending, _CHUNK)
                pending = inflater.unconsumed_tail
                if inflater.unused_data:
                    raise DecodeError("trailing garbage after gzip data")
                if out:
                    yield out
            pending = next(chunks, b"")
            if not pending:
                break
    except zlib.error as exc:
        raise DecodeError(f"bad gzip data: {exc}") from None
    if not inflater.eof:
        raise DecodeError("truncated gzip data")


def _inner(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Plaintext of the gzip or raw layer, chosen by its first byte."""
    for first in chunks:
        if first:
            break
    else:
        return
    if first[:1] == GZIP_MAGIC[:1]:
        yield from _gunzip(chunks, first)
    else:
        yield first
        yield from chunks


def decode_stream(file: BinaryIO, size: int, key: bytes | None) -> Iterator[bytes]:
    """The content of a spool file of ``size`` bytes read from ``file`` (at offset 0),
    in bounded chunks.  Raises :class:`DecodeError` at the point a check fails; for
    an encrypted file that can be after the last chunk (the tag comes last), so
    nothing yielded may be trusted before the iterator is exhausted."""
    if size == 0:
        return
    first = _read_exactly(file, 1)
    file.seek(0)
    if first[0] == crypto.VERSION:
        yield from _inner(_ciphertext(file, size, key))
    else:
        yield from _inner(_raw(file, size))
