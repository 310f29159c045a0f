"""Reading standard input into a spooled file, line by line."""

from __future__ import annotations

import io

import pytest

from mta.enqueue.reader import LINE_MAX, MEMORY_MAX, read_input, spool_file
from mta.enqueue.scan import InputScanner, ScanError


def scanner(ignore_dots: bool = False) -> InputScanner:
    return InputScanner(hostname="h.example", ignore_dots=ignore_dots, read_recipients=False)


def test_last_line_without_newline() -> None:
    out = io.BytesIO()
    read_input(io.BytesIO(b"Subject: s\n\nno newline"), scanner(), out)
    assert out.getvalue() == b"Subject: s\r\n\r\nno newline\r\n"


def test_stops_at_lone_dot_and_leaves_the_rest_unread() -> None:
    stream = io.BytesIO(b"a\n.\nrest\n")
    out = io.BytesIO()
    read_input(stream, scanner(), out)
    assert out.getvalue() == b"a\r\n"
    assert stream.read() == b"rest\n"


def test_line_longer_than_the_limit_refused() -> None:
    with pytest.raises(ScanError, match="longer"):
        read_input(io.BytesIO(b"x" * (LINE_MAX + 2) + b"\n"), scanner(), io.BytesIO())


def test_line_at_the_limit_accepted() -> None:
    out = io.BytesIO()
    read_input(io.BytesIO(b"x" * LINE_MAX + b"\r\n"), scanner(), out)
    assert len(out.getvalue()) == LINE_MAX + 2


def test_large_input_moves_to_disk() -> None:
    line = b"y" * 999 + b"\n"
    count = MEMORY_MAX // len(line) + 10
    with spool_file() as out:
        read_input(io.BytesIO(line * count), scanner(), out)
        assert out._rolled  # type: ignore[attr-defined]
        out.seek(0)
        assert out.read(1001) == b"y" * 999 + b"\r\n"
        out.seek(0, io.SEEK_END)
        assert out.tell() == count * 1001
