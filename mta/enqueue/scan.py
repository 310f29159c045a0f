"""The first pass over a message given to ``mta-sendmail``, sans-IO.

Feed it the input one physical line at a time (the bytes before each LF); it
returns what to keep, as CRLF-terminated lines, and notes what the second pass
needs (enqueue.c ``parse_message``):

* without ``-i`` a line holding only ``.`` ends the input (``ended``);
* a trailing CR is part of the line ending; any other CR ends a line too, as
  the server would take it, so a dot after it is stuffed like any other;
* an mbox ``From `` line (``From sender date``, with a time in it) at the top
  or among the headers, ``Return-Path:`` headers, and ``Bcc:`` headers (with
  their continuation lines) are dropped;
* the addresses of ``To:`` / ``Cc:`` / ``Bcc:`` are collected for ``-t`` and
  the first ``From:`` address is noted (it becomes the sender without ``-f``);
* which of ``From:`` / ``Date:`` / ``Message-ID:`` and the MIME headers exist;
* a header block ends at an empty line, or at the first line that is neither a
  header nor a continuation: an empty line is put there, so the server finds a
  well-formed header block.  Input that does not start with a header has none
  (``has_headers`` is false) and the second pass starts the body with a blank
  line after the headers it adds;
* body lines longer than RFC 5322's 998 octets (``long_body_lines``), 8-bit
  content, and the byte offset where the body starts in what was kept.

Header values are held (for their addresses) up to :data:`MAX_HEADER` bytes.
"""

from __future__ import annotations

import enum
import re

from mta.enqueue.addresses import AddressError, header_addresses

__all__ = ["MAX_HEADER", "RFC_LINE_MAX", "InputScanner", "ScanError"]

MAX_HEADER = 1024 * 1024
"""Longest address header (folded lines included) whose addresses are read."""

RFC_LINE_MAX = 998
"""RFC 5322 2.1.1: a line is at most 998 characters without its CRLF."""

_HEADER = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_MBOX_FROM = re.compile(rb"From \S+ .*[0-9]:[0-9][0-9]")
_BARE_CR = re.compile(rb"\r(?!\n)")

_ADDRESS_HEADERS = frozenset((b"to", b"cc", b"bcc"))
_NOTED = {
    b"from": "from",
    b"date": "date",
    b"message-id": "message-id",
    b"mime-version": "mime-version",
    b"content-type": "content-type",
    b"content-disposition": "content-disposition",
    b"content-transfer-encoding": "content-transfer-encoding",
}


class ScanError(ValueError):
    """The message cannot be submitted as it is (bad address header...)."""


class _Part(enum.Enum):
    START = "start"
    HEADERS = "headers"
    BODY = "body"


class InputScanner:
    """What the first pass keeps and learns; see the module docstring."""

    def __init__(self, *, hostname: str, ignore_dots: bool, read_recipients: bool) -> None:
        self.hostname = hostname
        self.ignore_dots = ignore_dots
        self.read_recipients = read_recipients
        self.ended = False
        self.has_headers = False
        self.seen: set[str] = set()
        self.recipients: list[str] = []
        self.from_address: str | None = None
        self.content_type = b""
        self.long_body_lines = 0
        self.longest_header_line = 0
        self.longest_body_line = 0
        self.eight_bit = False
        self.size = 0  # bytes kept so far
        self.body_offset = 0  # where the body starts in what was kept
        self._part = _Part.START
        self._name = b""  # the current header's name, lowercased
        self._drop = False  # the current header is being dropped
        self._value: list[bytes] | None = None  # the current header's value, when held
        self._value_size = 0

    # -- lines in --------------------------------------------------------------

    def line(self, raw: bytes) -> bytes:
        """One input line (without its LF); returns the bytes to keep."""
        if self.ended:
            return b""
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not self.ignore_dots and raw == b".":
            self.ended = True
            return b""
        if b"\r" in raw:
            return b"".join(self._one(piece) for piece in _BARE_CR.split(raw))
        return self._one(raw)

    def finish(self) -> None:
        """The input is over: complete the last header."""
        if self._part is _Part.HEADERS:
            self._end_header()
            self.body_offset = self.size

    # -- one logical line --------------------------------------------------------

    def _one(self, line: bytes) -> bytes:
        if self._part is _Part.START:
            if _MBOX_FROM.match(line):
                return b""
            if _HEADER.match(line) is None:
                if line:
                    self._part = _Part.BODY
                    return self._body(line)
                self.has_headers = True  # an empty header block
                self._part = _Part.BODY
                return self._keep(b"", body=False, mark_body=True)
            self.has_headers = True
            self._part = _Part.HEADERS
        if self._part is _Part.HEADERS:
            return self._header_line(line)
        return self._body(line)

    def _header_line(self, line: bytes) -> bytes:
        if not line:
            self._end_header()
            self._part = _Part.BODY
            return self._keep(b"", body=False, mark_body=True)
        if line[0] in b" \t":
            if self._value is not None:
                self._hold(b"\r\n" + line)
            return b"" if self._drop else self._keep(line, body=False)
        if _MBOX_FROM.match(line):
            self._end_header()
            self._drop = True
            return b""
        match = _HEADER.match(line)
        if match is None:
            # not a header: the body starts here, after the blank line it needs
            self._end_header()
            self._part = _Part.BODY
            blank = self._keep(b"", body=False, mark_body=True)
            return blank + self._body(line)
        self._end_header()
        self._start_header(line, match.end())
        return b"" if self._drop else self._keep(line, body=False)

    def _start_header(self, line: bytes, colon_end: int) -> None:
        name = line[: colon_end - 1].lower()
        self._name = name
        self._drop = name in (b"bcc", b"return-path")
        noted = _NOTED.get(name)
        if noted is not None:
            self.seen.add(noted)
        wanted = (name in _ADDRESS_HEADERS and self.read_recipients) or (
            name == b"from" and self.from_address is None
        )
        if name == b"content-type" and not self.content_type:
            wanted = True
        self._value = [] if wanted else None
        self._value_size = 0
        if self._value is not None:
            self._hold(line[colon_end:])

    def _hold(self, piece: bytes) -> None:
        assert self._value is not None
        self._value_size += len(piece)
        if self._value_size > MAX_HEADER:
            raise ScanError(f"{self._name.decode('ascii', 'replace')}: header too long")
        self._value.append(piece)

    def _end_header(self) -> None:
        value, name = self._value, self._name
        self._value = None
        self._drop = False
        self._name = b""
        if value is None:
            return
        text = b"".join(value)
        if name == b"content-type":
            self.content_type = text.strip().lower()
            return
        try:
            addresses = header_addresses(text, self.hostname)
        except AddressError as exc:
            raise ScanError(f"{name.decode('ascii').capitalize()}: header: {exc}") from None
        if name == b"from":
            if addresses:
                self.from_address = addresses[0]
        else:
            self.recipients += addresses

    def _body(self, line: bytes) -> bytes:
        if len(line) > RFC_LINE_MAX:
            self.long_body_lines += 1
        self.longest_body_line = max(self.longest_body_line, len(line))
        return self._keep(line, body=True)

    def _keep(self, line: bytes, *, body: bool, mark_body: bool = False) -> bytes:
        if not body:
            self.longest_header_line = max(self.longest_header_line, len(line))
        if not self.eight_bit and not line.isascii():
            self.eight_bit = True
        out = line + b"\r\n"
        self.size += len(out)
        if mark_body:
            self.body_offset = self.size
        return out
