"""The committed message file: the content, then its envelopes, then a fixed trailer.

One file per message makes a commit one file creation, one fsync and one
rename (plus the bucket fsync that concurrent commits share)::

    content     the message as :class:`~mta.spool.seal.StreamEncoder` wrote it
                (raw, gzip or AES-256-GCM framed), ``content length`` bytes
    envelopes   for each envelope: a 4-byte big-endian length, then the
                envelope sealed exactly as an envelope file is
                (:func:`~mta.spool.codec.encode_envelope` + ``seal_buffer``)
    trailer     32 bytes: ``MTA-MSG`` and the format version (1 byte), the
                content length (8 bytes), the envelope section length (4),
                the envelope count (4), 4 zero bytes, and the CRC-32 of the
                envelope section followed by the first 28 trailer bytes (4)

The content comes first so that a large message can be streamed to disk
before its envelopes are known; the trailer is found from the end of the
file.  Its lengths must add up to the file size exactly, so a truncated or
extended file is refused, and the CRC catches a damaged section or trailer
(each envelope also carries its own SHA-256, and encrypted or compressed
content its own tag or CRC).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import BinaryIO

import attrs

from mta.errors import CorruptMessage

__all__ = [
    "FORMAT_VERSION",
    "MAX_ENVELOPES",
    "MAX_ENVELOPE_BYTES",
    "TRAILER_SIZE",
    "Tail",
    "encode_tail",
    "read_tail",
]

FORMAT_VERSION = 1
MAGIC = b"MTA-MSG"
TRAILER_SIZE = 32
MAX_ENVELOPES = 1 << 20
MAX_ENVELOPE_BYTES = 4 << 20  # one sealed envelope (an envelope file's own limit)
_MAX_SECTION = 1 << 31
_TRAILER = struct.Struct(">7sBQIII")  # magic, version, content, section, count, zero
_LENGTH = struct.Struct(">I")
_CRC = struct.Struct(">I")


@attrs.frozen
class Tail:
    """What the trailer of a message file says, and the sealed envelopes it frames."""

    content_length: int
    envelopes: tuple[bytes, ...]


def encode_tail(content_length: int, sealed: Sequence[bytes]) -> bytes:
    """The bytes that follow ``content_length`` bytes of content: the envelope
    section and the trailer.  ``sealed``: each envelope as an envelope file holds it."""
    if not sealed or len(sealed) > MAX_ENVELOPES:
        raise ValueError(f"a message needs 1 to {MAX_ENVELOPES} envelopes, not {len(sealed)}")
    parts = []
    for blob in sealed:
        if not 0 < len(blob) <= MAX_ENVELOPE_BYTES:
            raise ValueError(f"sealed envelope of {len(blob)} bytes")
        parts.append(_LENGTH.pack(len(blob)))
        parts.append(blob)
    section = b"".join(parts)
    if len(section) >= _MAX_SECTION:
        raise ValueError("envelope section too large")
    head = _TRAILER.pack(MAGIC, FORMAT_VERSION, content_length, len(section), len(sealed), 0)
    crc = zlib.crc32(head, zlib.crc32(section))
    return section + head + _CRC.pack(crc)


def _read_at(file: BinaryIO, offset: int, size: int) -> bytes:
    file.seek(offset)
    data = file.read(size)
    if len(data) != size:
        raise CorruptMessage("message file: changed or truncated while reading")
    return data


def read_tail(file: BinaryIO, size: int) -> Tail:
    """The trailer and envelope section of the message file ``file`` (``size`` bytes).

    Raises :class:`~mta.errors.CorruptMessage` when they are missing, damaged or
    do not add up to ``size``; OSError when the file cannot be read."""
    if size < TRAILER_SIZE:
        raise CorruptMessage("message file: too short for its trailer")
    trailer = _read_at(file, size - TRAILER_SIZE, TRAILER_SIZE)
    magic, version, content, length, count, zero = _TRAILER.unpack_from(trailer)
    if magic != MAGIC:
        raise CorruptMessage("message file: no trailer (incomplete or not a message file)")
    if version != FORMAT_VERSION:
        raise CorruptMessage(f"message file: unknown format version {version}")
    if zero or not 0 < count <= MAX_ENVELOPES or content + length + TRAILER_SIZE != size:
        raise CorruptMessage("message file: trailer does not match the file")
    section = _read_at(file, content, length)
    (crc,) = _CRC.unpack_from(trailer, TRAILER_SIZE - 4)
    if zlib.crc32(trailer[: TRAILER_SIZE - 4], zlib.crc32(section)) != crc:
        raise CorruptMessage("message file: envelope section checksum mismatch")
    blobs = []
    offset = 0
    for _ in range(count):
        if offset + 4 > length:
            raise CorruptMessage("message file: envelope section truncated")
        (blob_length,) = _LENGTH.unpack_from(section, offset)
        offset += 4
        if not 0 < blob_length <= MAX_ENVELOPE_BYTES or offset + blob_length > length:
            raise CorruptMessage("message file: bad envelope length")
        blobs.append(section[offset : offset + blob_length])
        offset += blob_length
    if offset != length:
        raise CorruptMessage("message file: bytes after the last envelope")
    return Tail(content, tuple(blobs))
