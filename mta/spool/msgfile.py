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
                the envelope count (4), the CRC-32 of the content section as
                stored (4), and the CRC-32 of the envelope section followed by
                the first 28 trailer bytes (4)

The content comes first so that a large message can be streamed to disk
before its envelopes are known; the trailer is found from the end of the
file.  Its lengths must add up to the file size exactly, so a truncated or
extended file is refused, and the last CRC catches a damaged envelope
section or trailer (each envelope also carries its own SHA-256).

The content CRC is what protects the message itself: raw content has no
check of its own (encrypted or compressed content also has its GCM tag or
gzip CRC).  The writer computes it as it writes the stored bytes
(:class:`~mta.spool.writer.MessageWriter`, no second pass); readers check it
with :func:`check_content` before any of the content is handed out
(:meth:`~mta.spool.store.Store.open_message`, startup recovery), and a
mismatch is :class:`~mta.errors.CorruptMessage`: the message goes to
``corrupt/``, never to a recipient.

Versions: 2 (written) has the content CRC.  1 (read, so a queue written
before keeps working) has 4 zero bytes in its place: its content is not
checked (:attr:`Tail.content_crc` is None) beyond its own gzip CRC or GCM
tag; it is not rewritten to version 2 (that would vouch for content nobody
checked).
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
    "READABLE_VERSIONS",
    "TRAILER_SIZE",
    "Tail",
    "check_content",
    "content_crc",
    "encode_tail",
    "read_tail",
    "verify_crc",
]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no content CRC
MAGIC = b"MTA-MSG"
TRAILER_SIZE = 32
MAX_ENVELOPES = 1 << 20
MAX_ENVELOPE_BYTES = 4 << 20  # one sealed envelope (an envelope file's own limit)
_MAX_SECTION = 1 << 31
_TRAILER = struct.Struct(">7sBQIII")  # magic, version, content, section, count, content CRC
_LENGTH = struct.Struct(">I")
_CRC = struct.Struct(">I")
_CHUNK = 256 * 1024


@attrs.frozen
class Tail:
    """What the trailer of a message file says, and the sealed envelopes it frames."""

    content_length: int
    envelopes: tuple[bytes, ...]
    content_crc: int | None  # None: a version 1 file, its content not checked


def encode_tail(content_length: int, sealed: Sequence[bytes], *, crc: int) -> bytes:
    """The bytes that follow ``content_length`` bytes of content: the envelope
    section and the trailer.  ``sealed``: each envelope as an envelope file holds it;
    ``crc``: the CRC-32 (:func:`zlib.crc32`) of the content as stored."""
    if not 0 <= crc < 1 << 32:
        raise ValueError(f"content CRC {crc} out of range")
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
    head = _TRAILER.pack(MAGIC, FORMAT_VERSION, content_length, len(section), len(sealed), crc)
    check = zlib.crc32(head, zlib.crc32(section))
    return section + head + _CRC.pack(check)


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
    magic, version, content, length, count, crc = _TRAILER.unpack_from(trailer)
    if magic != MAGIC:
        raise CorruptMessage("message file: no trailer (incomplete or not a message file)")
    if version not in READABLE_VERSIONS:
        raise CorruptMessage(f"message file: unknown format version {version}")
    if version == 1 and crc:  # version 1 kept these bytes zero
        raise CorruptMessage("message file: trailer does not match the file")
    if not 0 < count <= MAX_ENVELOPES or content + length + TRAILER_SIZE != size:
        raise CorruptMessage("message file: trailer does not match the file")
    section = _read_at(file, content, length)
    (check,) = _CRC.unpack_from(trailer, TRAILER_SIZE - 4)
    if zlib.crc32(trailer[: TRAILER_SIZE - 4], zlib.crc32(section)) != check:
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
    return Tail(content, tuple(blobs), crc if version >= 2 else None)


def content_crc(file: BinaryIO, length: int) -> int:
    """The CRC-32 of the first ``length`` bytes of ``file`` (read in chunks from
    offset 0).  Raises :class:`~mta.errors.CorruptMessage` when the file is
    shorter, OSError when it cannot be read."""
    file.seek(0)
    crc = 0
    left = length
    while left:
        chunk = file.read(min(_CHUNK, left))
        if not chunk:
            raise CorruptMessage("message file: changed or truncated while reading")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    return crc


def check_content(file: BinaryIO, tail: Tail) -> None:
    """Check the content of the message file ``file`` against its trailer's CRC
    (nothing to check in a version 1 file).  Raises :class:`~mta.errors.CorruptMessage`
    on a mismatch, OSError when the file cannot be read."""
    if tail.content_crc is not None:
        verify_crc(content_crc(file, tail.content_length), tail.content_crc)


def verify_crc(found: int, expected: int) -> None:
    """:class:`~mta.errors.CorruptMessage` unless the content's CRC ``found`` is ``expected``."""
    if found != expected:
        raise CorruptMessage(
            f"message file: content checksum mismatch (crc32 {found:08x}, trailer {expected:08x})"
        )
