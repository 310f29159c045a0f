"""The DATA stream a relay sends: message content in, CRLF-only dot-stuffed bytes out.

:class:`DataEncoder` is fed the message in chunks of any size, split anywhere.
Every line ending it sees (CRLF, a bare LF or a bare CR) goes out as CRLF, so
we never pass on the ``<LF>.<CR><LF>`` that SMTP smuggling relies on; a line
that starts with a dot gets a second one (RFC 5321 4.5.2), and :meth:`finish`
ends the stream with ``CRLF.CRLF`` (after a CRLF of its own when the content did
not end with one).  A CR at the end of a chunk is held back until the next
chunk says whether an LF follows it.

:func:`has_8bit` tells whether a chunk holds an octet above 127, which a
7-bit server must never receive (RFC 6152).
"""

from __future__ import annotations

import re

__all__ = ["DataEncoder", "has_8bit"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")


def has_8bit(chunk: bytes) -> bool:
    """Whether ``chunk`` holds an octet that is not 7-bit ASCII."""
    return _EIGHT_BIT.search(chunk) is not None


class DataEncoder:
    """Content chunks in, the DATA stream out (``feed`` then one ``finish``)."""

    def __init__(self) -> None:
        self._line_start = True
        self._held_cr = False

    def feed(self, chunk: bytes) -> bytes:
        """The stream for ``chunk`` (maybe shorter: a trailing CR waits for the next)."""
        data = b"\r" + chunk if self._held_cr else chunk
        self._held_cr = data.endswith(b"\r")
        if self._held_cr:
            data = data[:-1]
        if not data:
            return b""
        out = _LINE_END.sub(b"\r\n", data).replace(b"\r\n.", b"\r\n..")
        if self._line_start and out.startswith(b"."):
            out = b"." + out
        self._line_start = out.endswith(b"\r\n")
        return out

    def finish(self) -> bytes:
        """The end of the stream: any held CR as a line end, then ``.`` CRLF."""
        if self._held_cr:
            self._held_cr = False
            self._line_start = True
            return b"\r\n.\r\n"
        return b".\r\n" if self._line_start else b"\r\n.\r\n"
