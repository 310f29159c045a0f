"""The message file of a transaction, written as DATA arrives.

:meth:`MessageWriter.write` is the hot path: it encodes the chunk (gzip and
AES-GCM if configured, incrementally) into a buffer; only when the buffer is
large does it create the file (first time) and write to the page cache, so a
small message touches the disk once, in the commit's worker thread.  It never
raises for I/O: the first error is kept in :attr:`MessageWriter.error` and
everything after it is dropped, so a session can finish reading DATA and then
learn at commit that the spool failed (``452`` / ``451``).  At commit,
:meth:`MessageWriter.seal` ends the encoded content (cheap, on the event loop)
and :meth:`MessageWriter.finish` writes what is left and the envelopes after
it, fsyncs and closes (in the commit's worker thread).

The CRC-32 of the content as stored (:attr:`MessageWriter.crc`, for the
trailer, :mod:`mta.spool.msgfile`) is computed as the encoded bytes are
produced, so the content is never read back.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

from mta.spool.fsio import write_all
from mta.spool.seal import StreamEncoder

__all__ = ["FLUSH_AT", "MessageWriter"]

FLUSH_AT = 128 * 1024


class MessageWriter:
    """Writes one message file; made by :meth:`Transaction.open_message`.

    ``opener`` creates the file and returns its fd; it is called once, on the
    first flush, or by :meth:`finish` if the message stayed small.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_crc",
        "_created",
        "_encoder",
        "_fd",
        "_flushed",
        "_opener",
        "_sealed",
        "error",
        "size",
    )

    def __init__(self, opener: Callable[[], int], encoder: StreamEncoder) -> None:
        self._opener = opener
        self._fd: int | None = None
        self._closed = False
        self._created = False
        self._encoder = encoder
        self._buffer = bytearray()
        self._flushed = 0  # encoded bytes already written to the file
        self._crc = 0  # of the encoded content so far
        self._sealed = False
        self.error: Exception | None = None  # the first failure; later data is dropped
        self.size = 0  # bytes of message content written (before encoding)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def crc(self) -> int:
        """The CRC-32 of the content as stored; complete once :meth:`seal` returned."""
        return self._crc

    @property
    def created(self) -> bool:
        """Whether the file was (or may have been) created on disk."""
        return self._created

    def _open(self) -> int:
        self._created = True
        self._fd = self._opener()
        return self._fd

    def write(self, data: bytes) -> None:
        """Append ``data`` to the message (synchronous, cheap, never raises for I/O)."""
        if self._closed or self._sealed:
            raise RuntimeError("message writer is closed (transaction committed or aborted)")
        if self.error is not None:
            return
        self.size += len(data)
        try:
            encoded = self._encoder.encode(data)
            self._crc = zlib.crc32(encoded, self._crc)
            self._buffer += encoded
            if len(self._buffer) >= FLUSH_AT:
                write_all(self._fd if self._fd is not None else self._open(), self._buffer)
                self._flushed += len(self._buffer)
                self._buffer.clear()
        except (OSError, ValueError) as exc:
            self.error = exc
            self._buffer = bytearray()

    def seal(self) -> int:
        """End the content (no more :meth:`write`) and return its encoded length.
        Raises the kept error, if any (cheap: no disk I/O)."""
        if self._closed or self._sealed:
            raise RuntimeError("message writer is closed")
        self._sealed = True
        if self.error is not None:
            raise self.error
        encoded = self._encoder.finish()
        self._crc = zlib.crc32(encoded, self._crc)
        self._buffer += encoded
        return self._flushed + len(self._buffer)

    def finish(self, tail: bytes = b"") -> None:
        """After :meth:`seal`: create the file if needed, write the rest of the content
        and ``tail``, fsync and close (blocking).  Raises the failure of this step;
        the fd is closed either way and never fsynced twice."""
        if self._closed or not self._sealed:
            raise RuntimeError("message writer is closed or not sealed")
        self._closed = True
        try:
            fd = self._fd if self._fd is not None else self._open()
            self._buffer += tail
            write_all(fd, self._buffer)
            self._buffer = bytearray()
            os.fsync(fd)
        finally:
            self._close_fd()

    def close(self) -> None:
        """Drop the message without finishing it (abort)."""
        self._closed = True
        self._buffer = bytearray()
        self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
