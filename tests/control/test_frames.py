"""The control socket's framing, without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.control.frames import (
    FRAME_MAX,
    REQUEST_MAX,
    Frame,
    FrameKind,
    FrameReader,
    RequestReader,
    encode_frame,
    encode_request,
)
from mta.errors import ControlError


def test_request_round_trip_byte_by_byte() -> None:
    argv = ["show", "queue", "ünïcode", "a\nb"]
    line = encode_request(argv)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # escapes keep it one line
    reader = RequestReader()
    results = [reader.feed(line[i : i + 1]) for i in range(len(line))]
    assert results[:-1] == [None] * (len(line) - 1)
    assert results[-1] == argv


@pytest.mark.parametrize("line", [b"not json\n", b'{"a": 1}\n', b'["ok", 1]\n', b"\xff\n", b"[\n"])
def test_malformed_requests(line: bytes) -> None:
    with pytest.raises(ControlError, match="malformed request"):
        RequestReader().feed(line)


def test_request_bounds() -> None:
    with pytest.raises(ControlError, match="too long"):
        encode_request(["x" * REQUEST_MAX])
    reader = RequestReader()
    with pytest.raises(ControlError, match="too long"):
        reader.feed(b"[" + b" " * REQUEST_MAX)  # no newline yet, already too long
    with pytest.raises(ControlError, match="too long"):
        RequestReader().feed(json.dumps(["y" * REQUEST_MAX]).encode() + b"\n")


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 50))
def test_frames_round_trip_in_any_pieces(payloads: list[bytes], step: int) -> None:
    stream = b"".join(encode_frame(FrameKind.OUT, p) for p in payloads)
    stream += encode_frame(FrameKind.END)
    reader = FrameReader()
    frames: list[Frame] = []
    for i in range(0, len(stream), step):
        frames += reader.feed(stream[i : i + step])
    assert reader.finished
    assert frames[-1] == Frame(FrameKind.END)
    assert b"".join(f.payload for f in frames[:-1]) == b"".join(payloads)


def test_long_output_is_split_and_nothing_after_the_final_frame_is_read() -> None:
    data = b"z" * (FRAME_MAX + 10)
    encoded = encode_frame(FrameKind.OUT, data)
    assert encoded.count(b"out ") == 2
    reader = FrameReader()
    frames = list(reader.feed(encoded + encode_frame(FrameKind.ERR, b"boom") + b"out 3\nabc"))
    assert [f.kind for f in frames] == [FrameKind.OUT, FrameKind.OUT, FrameKind.ERR]
    assert frames[-1].payload == b"boom"
    assert list(reader.feed(b"more")) == []


@pytest.mark.parametrize(
    "stream",
    [
        b"bogus 3\nabc",
        b"out -1\n",
        b"out +3\nabc",
        b"out x\n",
        b"out " + b"9" * 40,
        b"out 99999999\n",
    ],
)
def test_malformed_answers(stream: bytes) -> None:
    with pytest.raises(ControlError, match="malformed answer"):
        list(FrameReader().feed(stream))


def test_final_frames_must_fit() -> None:
    with pytest.raises(ValueError):
        encode_frame(FrameKind.ERR, b"e" * (FRAME_MAX + 1))
