"""The message file of a transaction, written as DATA arrives.

:meth:`MessageWriter.write` is the hot path: it encodes the chunk (gzip and
AES-GCM if configured, incrementally) into a buffer and writes to the page
cache when the buffer is large; it never raises for I/O.  The first write
error is kept in :attr:`MessageWriter.error` and everything after it is
dropped, so a session can finish reading DATA and then learn at commit that
the spool failed (``452`` / ``451``).  Finishing (tail, fsync, close) happens
in a worker thread during the commit.
"""

from __future__ import annotations

import os

from mta.spool.fsio import write_all
from mta.spool.seal import StreamEncoder

__all__ = ["FLUSH_AT", "MessageWriter"]

FLUSH_AT = 128 * 1024


class MessageWriter:
    """Writes one message file; made by :meth:`Transaction.open_message`."""

    __slots__ = ("_buffer", "_encoder", "_fd", "error", "size")

    def __init__(self, fd: int, encoder: StreamEncoder) -> None:
        self._fd: int | None = fd
        self._encoder = encoder
        self._buffer = bytearray()
        self.error: Exception | None = None  # the first failure; later data is dropped
        self.size = 0  # bytes of message content written (before encoding)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, data: bytes) -> None:
        """Append ``data`` to the message (synchronous, cheap, never raises for I/O)."""
        if self._fd is None:
            raise RuntimeError("message writer is closed (transaction committed or aborted)")
        if self.error is not None:
            return
        self.size += len(data)
        try:
            self._buffer += self._encoder.encode(data)
            if len(self._buffer) >= FLUSH_AT:
                write_all(self._fd, self._buffer)
                self._buffer.clear()
        except (OSError, ValueError) as exc:
            self.error = exc
            self._buffer.clear()

    def finish(self) -> None:
        """Write the tail, fsync and close (blocking).  Raises the kept error, if
        any, or the failure of this step; the fd is closed either way and never
        fsynced twice."""
        fd = self._fd
        if fd is None:
            raise RuntimeError("message writer is closed")
        self._fd = None
        try:
            if self.error is not None:
                raise self.error
            self._buffer += self._encoder.finish()
            write_all(fd, self._buffer)
            self._buffer.clear()
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Drop the message without finishing it (abort)."""
        fd, self._fd = self._fd, None
        self._buffer.clear()
        if fd is not None:
            os.close(fd)
