"""The message file: content, envelope section, trailer; every damage is CorruptMessage,
a damaged content too (version 2); version 1 files still read."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.errors import CorruptMessage
from mta.spool.msgfile import (
    FORMAT_VERSION,
    MAGIC,
    MAX_ENVELOPE_BYTES,
    MAX_ENVELOPES,
    TRAILER_SIZE,
    Tail,
    check_content,
    content_crc,
    encode_tail,
    read_tail,
)
from mta.spool.store import decode_sealed_envelope

from .conftest import KEY, assigned, seal_envelope

CONTENT = b"Received: by test\r\n\r\nhello\r\n"
SEALED = [b"first envelope", b"second, a bit longer, envelope"]


def read(data: bytes, size: int | None = None) -> Tail:
    return read_tail(io.BytesIO(data), len(data) if size is None else size)


def forge(
    content: bytes,
    section: bytes,
    *,
    count: int,
    magic: bytes = MAGIC,
    version: int = FORMAT_VERSION,
    content_length: int | None = None,
    section_length: int | None = None,
    content_check: int | None = None,
) -> bytes:
    """A message file with any trailer fields and a CRC that matches them (so the
    checks behind the CRC are reached).  ``content_check``: the content CRC field,
    by default the right one (version 2) or zero (version 1)."""
    if content_check is None:
        content_check = zlib.crc32(content) if version >= 2 else 0
    head = struct.pack(
        ">7sBQIII",
        magic,
        version,
        len(content) if content_length is None else content_length,
        len(section) if section_length is None else section_length,
        count,
        content_check,
    )
    crc = zlib.crc32(head, zlib.crc32(section))
    return content + section + head + struct.pack(">I", crc)


def framed(*blobs: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(blob)) + blob for blob in blobs)


def tail_of(content: bytes, sealed: list[bytes] = SEALED) -> bytes:
    return encode_tail(len(content), sealed, crc=zlib.crc32(content))


def test_round_trip() -> None:
    data = CONTENT + tail_of(CONTENT)
    assert read(data) == Tail(len(CONTENT), tuple(SEALED), zlib.crc32(CONTENT))
    # The tail is the length-prefixed envelopes, then the trailer.
    assert data[len(CONTENT) : -TRAILER_SIZE] == framed(*SEALED)
    assert data[-TRAILER_SIZE:].startswith(MAGIC + bytes([FORMAT_VERSION]))


def test_forge_makes_what_encode_tail_makes() -> None:
    assert forge(CONTENT, framed(*SEALED), count=2) == CONTENT + tail_of(CONTENT)


@pytest.mark.parametrize("content", [b"", b"x", CONTENT * 1000])
def test_round_trip_of_real_envelopes(content: bytes) -> None:
    envelopes = assigned(0x0A000001, 3)
    sealed = [seal_envelope(e, compress=True, key=KEY) for e in envelopes]
    data = content + tail_of(content, sealed)
    tail = read(data)
    assert tail.content_length == len(content)
    assert [decode_sealed_envelope(blob, KEY) for blob in tail.envelopes] == envelopes


def test_encode_tail_refuses_what_it_could_not_read() -> None:
    with pytest.raises(ValueError, match="1 to"):
        encode_tail(0, [], crc=0)
    with pytest.raises(ValueError, match="sealed envelope of 0 bytes"):
        encode_tail(0, [b"ok", b""], crc=0)
    with pytest.raises(ValueError, match="sealed envelope"):
        encode_tail(0, [b"x" * (MAX_ENVELOPE_BYTES + 1)], crc=0)
    with pytest.raises(ValueError, match="CRC"):
        encode_tail(0, [b"ok"], crc=1 << 32)
    encode_tail(0, [b"x" * MAX_ENVELOPE_BYTES], crc=0)  # the limit itself is fine


def valid() -> bytes:
    return CONTENT + tail_of(CONTENT)


def flip(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x01
    return bytes(damaged)


TRAILER_START = len(CONTENT) + len(framed(*SEALED))
CORRUPTIONS = {
    "empty": (b"", "too short"),
    "too short": (valid()[-TRAILER_SIZE + 1 :], "too short"),
    "no trailer at all": (CONTENT * 10, "no trailer"),
    "bad magic": (flip(valid(), TRAILER_START), "no trailer"),
    "wrong version": (forge(CONTENT, framed(*SEALED), count=2, version=3), "version 3"),
    "version 0": (forge(CONTENT, framed(*SEALED), count=2, version=0), "version 0"),
    "truncated at the end": (valid()[:-1], "no trailer"),
    "truncated at the start": (valid()[1:], "does not match"),
    "a byte inserted in the content": (b"x" + valid(), "does not match"),
    "content length too large": (
        forge(CONTENT, framed(*SEALED), count=2, content_length=len(CONTENT) + 1),
        "does not match",
    ),
    "section length too small": (
        forge(CONTENT, framed(*SEALED), count=2, section_length=len(framed(*SEALED)) - 1),
        "does not match",
    ),
    "crc mismatch": (flip(valid(), len(valid()) - 1), "checksum"),
    "section damaged": (flip(valid(), len(CONTENT) + 6), "checksum"),
    "section truncated (count too large)": (
        forge(CONTENT, framed(*SEALED), count=3),
        "section truncated",
    ),
    "section truncated inside a length": (
        forge(CONTENT, framed(SEALED[0]) + b"\0\0", count=2),
        "section truncated",
    ),
    "envelope length 0": (forge(CONTENT, framed(b""), count=1), "bad envelope length"),
    "envelope length past the section": (
        forge(CONTENT, struct.pack(">I", 100) + b"short", count=1),
        "bad envelope length",
    ),
    "envelope length over the limit": (
        forge(CONTENT, struct.pack(">I", MAX_ENVELOPE_BYTES + 1) + b"x", count=1),
        "bad envelope length",
    ),
    "trailing bytes in the section": (
        forge(CONTENT, framed(*SEALED) + b"extra", count=2),
        "after the last envelope",
    ),
    "trailing bytes (count too small)": (
        forge(CONTENT, framed(*SEALED), count=1),
        "after the last envelope",
    ),
    "zero envelopes": (forge(CONTENT, b"", count=0), "does not match"),
    "too many envelopes": (
        forge(CONTENT, framed(*SEALED), count=MAX_ENVELOPES + 1),
        "does not match",
    ),
    "version 1 with a content CRC": (
        forge(CONTENT, framed(*SEALED), count=2, version=1, content_check=1),
        "does not match",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_every_corruption_is_refused(corruption: str) -> None:
    data, reason = CORRUPTIONS[corruption]
    with pytest.raises(CorruptMessage, match=reason):
        read(data)


def test_every_single_byte_change_of_the_tail_is_caught() -> None:
    data = valid()
    for position in range(len(CONTENT), len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[position] ^= bit
            with pytest.raises(CorruptMessage):
                read(bytes(damaged))


def test_a_file_shorter_than_its_size_is_refused() -> None:
    data = valid()
    with pytest.raises(CorruptMessage, match="truncated while reading"):
        read(data[:-10], size=len(data))
    # ... and so is one that lies about the section while reading it
    with pytest.raises(CorruptMessage):
        read(data, size=len(data) + 5)


def test_a_version_1_file_still_reads_and_its_content_is_not_checked() -> None:
    data = forge(CONTENT, framed(*SEALED), count=2, version=1)
    tail = read(data)
    assert tail == Tail(len(CONTENT), tuple(SEALED), None)
    check_content(io.BytesIO(flip(data, 3)), tail)  # nothing to check it against


def test_every_single_byte_change_of_the_content_is_caught() -> None:
    data = CONTENT * 3 + tail_of(CONTENT * 3)
    tail = read(data)
    check_content(io.BytesIO(data), tail)
    for position in range(tail.content_length):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[position] ^= bit
            assert read(bytes(damaged)) == tail  # the trailer cannot tell...
            with pytest.raises(CorruptMessage, match="content checksum mismatch"):
                check_content(io.BytesIO(bytes(damaged)), tail)  # ... the content CRC can


def test_content_crc_reads_in_chunks_and_refuses_a_short_file() -> None:
    content = bytes(range(256)) * 3000  # several chunks
    assert content_crc(io.BytesIO(content + b"more"), len(content)) == zlib.crc32(content)
    assert content_crc(io.BytesIO(content), 0) == 0
    with pytest.raises(CorruptMessage, match="truncated"):
        content_crc(io.BytesIO(content[:-1]), len(content))


def test_the_content_is_not_read() -> None:
    read_from: list[int] = []

    class Counting(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            read_from.append(self.tell())
            return super().read(size)

    content = b"c" * 100_000
    file = Counting(content + tail_of(content))
    assert read_tail(file, len(file.getvalue())).envelopes == tuple(SEALED)
    assert read_from and min(read_from) == len(content)  # the section, then the trailer


@st.composite
def forged_files(draw: st.DrawFn) -> bytes:
    """A file ending in a trailer whose CRC is right and whose fields are anything
    (mostly near-valid: the checks behind the CRC are what this exercises)."""
    content = draw(st.binary(max_size=40))
    blobs = draw(st.lists(st.binary(max_size=30), max_size=4))
    section = framed(*blobs)
    section = draw(
        st.sampled_from([section, section + draw(st.binary(min_size=1, max_size=6)), section[:-1]])
        if section
        else st.binary(max_size=10)
    )
    count = draw(st.sampled_from([len(blobs), len(blobs) + 1, max(len(blobs) - 1, 0)]))
    return forge(
        content,
        section,
        count=count,
        version=draw(st.sampled_from([FORMAT_VERSION] * 6 + [1, 1, 0, 255])),
        content_length=draw(st.sampled_from([None] * 4 + [len(content) + 1, 0])),
        content_check=draw(st.sampled_from([None, None, None, 1 << 31])),
    )


def mutated(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    damaged = bytearray(data)
    for position, value in changes:
        if damaged:
            damaged[position % len(damaged)] = value
    return bytes(damaged)


any_file = st.one_of(
    st.binary(max_size=200),
    forged_files(),
    st.builds(
        mutated,
        forged_files(),
        st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=3),
    ),
    st.builds(lambda data, cut: data[cut:], forged_files(), st.integers(0, 20)),
)


@settings(max_examples=500)
@given(data=any_file, extra=st.sampled_from([0, 0, 0, 1, 40]))
def test_arbitrary_bytes_never_raise_anything_but_corrupt_message(data: bytes, extra: int) -> None:
    size = len(data) + extra  # a size larger than the file: it shrank while being read
    try:
        tail = read(data, size)
    except CorruptMessage:
        return
    # Whatever is accepted is exactly what encode_tail (or mta before it) would have written.
    assert size == len(data)
    length, blobs = tail.content_length, list(tail.envelopes)
    if tail.content_crc is None:
        expected = forge(b"", framed(*blobs), count=len(blobs), version=1, content_length=length)
    else:
        expected = encode_tail(length, blobs, crc=tail.content_crc)
    assert data[length:] == expected
