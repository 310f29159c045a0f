"""Reading the message from ``mta-sendmail``'s standard input (blocking, at the CLI edge).

The input goes through :class:`~mta.enqueue.scan.InputScanner` line by line
into a spooled temporary file: kept in memory while small, on disk beyond
:data:`MEMORY_MAX`, so a message of any size costs no more memory than its
longest line.  A line longer than :data:`LINE_MAX` is refused.
"""

from __future__ import annotations

import tempfile
from typing import IO, BinaryIO

from mta.enqueue.scan import InputScanner, ScanError

__all__ = ["LINE_MAX", "MEMORY_MAX", "read_input", "spool_file"]

MEMORY_MAX = 1024 * 1024
"""Bytes of message kept in memory before the temporary file moves to disk."""

LINE_MAX = 1024 * 1024
"""Longest input line accepted (bytes, without its line ending)."""

_CHUNK = 64 * 1024


def spool_file() -> IO[bytes]:
    """A temporary file for message content: in memory while small, then on disk."""
    return tempfile.SpooledTemporaryFile(max_size=MEMORY_MAX, mode="w+b")


def read_input(stream: BinaryIO, scanner: InputScanner, out: IO[bytes]) -> None:
    """Feed ``stream`` to ``scanner`` until end of file (or a lone dot), writing what
    it keeps to ``out``.  ScanError for a line over :data:`LINE_MAX`."""
    while not scanner.ended:
        line = stream.readline(LINE_MAX + 2)
        if not line:
            break
        if line.endswith(b"\n"):
            line = line[:-1]
        if len(line) > LINE_MAX + 1:  # + 1: the CR of a CRLF
            raise ScanError(f"a line of the message is longer than {LINE_MAX} bytes")
        kept = scanner.line(line)
        if kept:
            out.write(kept)
    scanner.finish()
    out.flush()
