"""Queue encryption with OpenSMTPD's framing (``crypto.c``), so keys and tools carry over.

An encrypted file is ``0x01 | 12-byte random IV | AES-256-GCM ciphertext |
16-byte tag``, with no additional authenticated data, and the key is exactly
32 raw bytes.  Buffers are sealed in one call; messages are sealed as they
arrive with :class:`StreamEncryptor` and opened with :class:`StreamDecryptor`,
whose output is only trustworthy once :meth:`StreamDecryptor.finalize` passed.

``cryptography`` is imported at the first use: a spool without a key never
loads it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "HEADER_SIZE",
    "IV_SIZE",
    "KEY_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "VERSION",
    "CryptoError",
    "StreamDecryptor",
    "StreamEncryptor",
    "check_key",
    "decrypt",
    "encrypt",
]

VERSION = 0x01
IV_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
HEADER_SIZE = 1 + IV_SIZE
OVERHEAD = HEADER_SIZE + TAG_SIZE
_MAX_SIZE = 0x1000000000  # OpenSMTPD refuses files of 64 GiB and more


class CryptoError(ValueError):
    """Not an encrypted spool file, or not one this key opens (bad tag)."""


def check_key(key: bytes) -> bytes:
    """Return ``key`` if it is a valid queue key (exactly 32 bytes), else raise ValueError."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"queue encryption key must be exactly {KEY_SIZE} bytes")
    return key


def encrypt(key: bytes, plain: bytes) -> bytes:
    """Seal ``plain`` in one framed buffer."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = os.urandom(IV_SIZE)
    return bytes([VERSION]) + iv + AESGCM(key).encrypt(iv, plain, None)


def decrypt(key: bytes, data: bytes) -> bytes:
    """Open a framed buffer; raise :class:`CryptoError` if it is not one or fails its tag."""
    if len(data) < OVERHEAD:  # (OpenSMTPD also refuses exactly OVERHEAD: empty plaintext)
        raise CryptoError("encrypted file too short")
    if data[0] != VERSION:
        raise CryptoError(f"unknown encryption version {data[0]}")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(data[1:HEADER_SIZE], data[HEADER_SIZE:], None)
    except InvalidTag:
        raise CryptoError("authentication failed (corrupt data or wrong key)") from None


def _gcm(key: bytes, iv: bytes, tag: bytes | None = None) -> Cipher[modes.GCM]:
    """An AES-256-GCM cipher (``encryptor()`` / ``decryptor()`` to use it)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.GCM(iv, tag))


class StreamEncryptor:
    """Encrypt a stream: :meth:`update` returns the bytes to write so far (the
    header first), :meth:`finalize` the rest including the tag."""

    __slots__ = ("_ctx", "_header", "_size")

    def __init__(self, key: bytes) -> None:
        iv = os.urandom(IV_SIZE)
        self._ctx = _gcm(key, iv).encryptor()
        self._header: bytes | None = bytes([VERSION]) + iv
        self._size = 0

    def update(self, plain: bytes) -> bytes:
        self._size += len(plain)
        if self._size >= _MAX_SIZE:
            raise CryptoError("message too large to encrypt")
        out = self._ctx.update(plain)
        if self._header is not None:
            out, self._header = self._header + out, None
        return out

    def finalize(self) -> bytes:
        head = self._header or b""
        self._header = None
        tail = self._ctx.finalize()
        return head + tail + self._ctx.tag


class StreamDecryptor:
    """Decrypt a framed stream whose total size is known (the tag is at the end).

    Build it with the first :data:`HEADER_SIZE` bytes and the last
    :data:`TAG_SIZE` bytes of the file, feed the ciphertext in between to
    :meth:`update`, and call :meth:`finalize`: it raises :class:`CryptoError`
    if the data was not authentic, in which case everything returned before
    must be thrown away.
    """

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes, header: bytes, tag: bytes) -> None:
        if len(header) != HEADER_SIZE or len(tag) != TAG_SIZE:
            raise CryptoError("encrypted file too short")
        if header[0] != VERSION:
            raise CryptoError(f"unknown encryption version {header[0]}")
        self._ctx = _gcm(key, header[1:], tag).decryptor()

    def update(self, data: bytes) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._ctx.finalize()
        except InvalidTag:
            raise CryptoError("authentication failed (corrupt data or wrong key)") from None
