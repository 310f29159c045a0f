"""Tests for mta.relay.data: the DATA stream is CRLF-only, dot-stuffed and ends
with CRLF.CRLF, however the content is cut into chunks."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from mta.relay.data import DataEncoder, has_8bit


def encode(*chunks: bytes) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()


def unstuff(stream: bytes) -> bytes:
    """What a server makes of the stream (RFC 5321 4.5.2), strictly: CRLF lines."""
    lines = stream.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    out = []
    for line in lines[:-2]:
        assert b"\r" not in line and b"\n" not in line
        assert line != b"."
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in out)


def normalized(content: bytes) -> bytes:
    """The content with every line end as CRLF and a last line end added."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", content)
    return text if not text or text.endswith(b"\r\n") else text + b"\r\n"


def test_examples() -> None:
    assert encode(b"") == b".\r\n"
    assert encode(b"a\r\n") == b"a\r\n.\r\n"
    assert encode(b"a") == b"a\r\n.\r\n"
    assert encode(b".\r\n") == b"..\r\n.\r\n"
    assert encode(b"a\r\n.b\r\n..\r\n") == b"a\r\n..b\r\n...\r\n.\r\n"
    assert encode(b"a\n.\nb") == b"a\r\n..\r\nb\r\n.\r\n"  # no smuggled end of data
    assert encode(b"a\r.\rb\r") == b"a\r\n..\r\nb\r\n.\r\n"
    assert encode(b"a\r", b"\n", b".x") == b"a\r\n..x\r\n.\r\n"
    assert encode(b"a\r", b".x") == b"a\r\n..x\r\n.\r\n"
    assert encode(b"a\r\n", b".", b".") == b"a\r\n...\r\n.\r\n"


def test_has_8bit() -> None:
    assert not has_8bit(b"plain \x7f ascii\r\n")
    assert has_8bit(b"caf\xc3\xa9")


content = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"a", b"\xe9", b"\x00", b" "]), max_size=60
).map(b"".join)


@given(content, st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_round_trip_whatever_the_chunks(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    stream = encode(*chunks)
    assert stream == encode(data)
    assert unstuff(stream) == normalized(data)
    framed = b"\r\n" + stream  # the stream follows the CRLF of the 354 reply
    assert framed.endswith(b"\r\n.\r\n")
    assert framed.find(b"\r\n.\r\n") == len(framed) - 5
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", stream) is None


@given(st.binary(max_size=200))
def test_round_trip_any_bytes(data: bytes) -> None:
    assert unstuff(encode(data)) == normalized(data)
