"""The DATA phase decoder: message content in, complete CRLF lines out.

Policy (DESIGN.md, Postfix 3.9 ``normalize``): only ``<CR><LF>.<CR><LF>`` ends the
data (the CRLF of the DATA command counts as the first one); a bare CR or bare LF
inside the content ends a line and is written as CRLF, so ``\\n.\\n`` or
``\\r.\\r\\n`` never end the message; a leading dot is removed from lines that
have more after it (RFC 5321 4.5.2).  The size is counted as RFC 1870 does:
the content as it will be stored, CRLF included.  Too big or a NUL: the content
is still drained to the final dot and the error given there.  A line longer
than :data:`TEXT_LINE_MAX` is fatal.  The reader keeps no more than the current
unfinished line, so memory does not grow with the message.
"""

from __future__ import annotations

import re

from mta.reply import Reply
from mta.smtp import replies

__all__ = ["TEXT_LINE_MAX", "DataReader", "LineTooLong"]

TEXT_LINE_MAX = 65535
"""Longest accepted content line, its CRLF included (OpenSMTPD's SMTP_LINE_MAX)."""

CR = 0x0D
LF = 0x0A
DOT = 0x2E

# The first position where a plain run of CRLF lines stops being plain.
_SPECIAL = re.compile(rb"\r\n\.|\r(?!\n)|(?<!\r)\n|\x00")
_TERMINATOR = re.compile(rb"[\r\n]")


def _first_special(buf: bytes | bytearray, pos: int) -> int:
    """Where :data:`_SPECIAL` first matches at or after ``pos``, or -1.

    The common case (every CR and LF paired as CRLF) is decided with C-speed
    ``count`` / ``find``; anything else falls back to the regular expression."""
    pairs = buf.count(b"\r\n", pos)
    if buf.count(b"\r", pos) == pairs and buf.count(b"\n", pos) == pairs:
        dot = buf.find(b"\r\n.", pos)
        nul = buf.find(b"\0", pos)
        if dot < 0 or 0 <= nul < dot:
            return nul
        return dot
    match = _SPECIAL.search(buf, pos)
    return -1 if match is None else match.start()


class LineTooLong(Exception):
    """A content line exceeded :data:`TEXT_LINE_MAX` (the session must close)."""


class DataReader:
    """Decode one message's content; feed it buffered bytes, read back what it consumed."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self.error: Reply | None = None
        self.done = False
        self._prev_crlf = True  # the previous line ended with a real CRLF

    def _account(self, length: int) -> None:
        self.size += length
        if self.max_size and self.size > self.max_size and self.error is None:
            self.error = replies.DATA_TOO_BIG

    def feed(self, buf: bytes | bytearray, out: bytearray) -> int:
        """Decode the complete lines at the start of ``buf`` into ``out`` and return
        how many bytes of ``buf`` were consumed.  Stops after the final dot
        (``done`` is then set) or when only an unfinished line is left."""
        pos = 0
        end = len(buf)
        while pos < end and not self.done:
            if buf[pos] != DOT:
                stop = self._plain(buf, pos, out)
                if stop > pos:
                    pos = stop
                    continue
            step = self._line(buf, pos, out)
            if step == pos:
                break
            pos = step
        if not self.done and end - pos >= TEXT_LINE_MAX:
            raise LineTooLong
        return pos

    def _plain(self, buf: bytes | bytearray, pos: int, out: bytearray) -> int:
        """Copy the run of ordinary CRLF lines starting at ``pos`` (no dot at a line
        start after the first, no bare CR / LF, no NUL); return where it stops."""
        special = _first_special(buf, pos)
        if special < 0:
            stop = buf.rfind(b"\r\n", pos) + 2
        elif buf[special] == CR and buf[special + 1 : special + 2] == b"\n":
            stop = special + 2  # "\r\n." : the CRLF belongs to the run
        else:
            stop = buf.rfind(b"\r\n", pos, special) + 2
        if stop <= pos + 1:
            return pos
        length = stop - pos
        if length > TEXT_LINE_MAX and max(map(len, bytes(buf[pos:stop]).split(b"\r\n"))) + 2 > (
            TEXT_LINE_MAX
        ):
            raise LineTooLong
        self._account(length)
        if self.error is None:
            out += buf[pos:stop]
        self._prev_crlf = True
        return stop

    def _line(self, buf: bytes | bytearray, pos: int, out: bytearray) -> int:
        """Decode the one line at ``pos``; return ``pos`` itself when it is unfinished."""
        match = _TERMINATOR.search(buf, pos)
        if match is None:
            return pos
        term = match.start()
        if buf[term] == CR:
            if term + 1 == len(buf):
                return pos  # CR LF or bare CR: the next byte decides
            crlf = buf[term + 1] == LF
            after = term + 2 if crlf else term + 1
        else:
            crlf = False
            after = term + 1
        line = buf[pos:term]
        if len(line) + 2 > TEXT_LINE_MAX:
            raise LineTooLong
        if line == b"." and crlf and self._prev_crlf:
            self.done = True
            return after
        if len(line) > 1 and line[0] == DOT:
            line = line[1:]
        if b"\0" in line and self.error is None:
            self.error = replies.DATA_NUL
        self._account(len(line) + 2)
        if self.error is None:
            out += line
            out += b"\r\n"
        self._prev_crlf = crlf
        return after
