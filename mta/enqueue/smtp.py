"""The client side of SMTP for local submission, sans-IO: replies parsed from
bytes, commands and message content encoded to bytes.

:class:`ReplyParser` turns what the server sends into :class:`~mta.reply.Reply`
values (multi-line replies joined, the enhanced status code split off) and
refuses anything that is not SMTP.  :class:`DotStuffer` makes the DATA stream
(RFC 5321 4.5.2) from CRLF-terminated content.  :func:`command` builds a
command line and refuses CR, LF and NUL in its argument, so no address can add
a command.
"""

from __future__ import annotations

import re

from mta.reply import Reply

__all__ = [
    "REPLY_LINES_MAX",
    "REPLY_LINE_MAX",
    "DotStuffer",
    "ProtocolError",
    "ReplyParser",
    "command",
    "extensions",
    "mail_from",
    "rcpt_to",
]

REPLY_LINE_MAX = 4096
"""A reply line longer than this (RFC 5321 says 512) is a protocol error."""

REPLY_LINES_MAX = 1000
"""A reply with more lines than this is a protocol error."""

_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])(.*)", re.DOTALL)
_ENHANCED = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?: |$)")


class ProtocolError(Exception):
    """The server said something that is not an SMTP reply."""


class ReplyParser:
    """Bytes from the server in, complete replies out; ``line_max`` and
    ``lines_max`` bound one line and one reply."""

    def __init__(self, *, line_max: int = REPLY_LINE_MAX, lines_max: int = REPLY_LINES_MAX) -> None:
        self.line_max = line_max
        self.lines_max = lines_max
        self._buffer = bytearray()
        self._code: bytes | None = None
        self._lines: list[bytes] = []

    def feed(self, data: bytes) -> list[Reply]:
        """The replies completed by ``data`` (maybe none)."""
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.line_max:
                    raise ProtocolError("reply line too long")
                return replies
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.line_max:
                raise ProtocolError("reply line too long")
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)

    @property
    def pending(self) -> bool:
        """Part of a reply has been received."""
        return bool(self._buffer) or self._code is not None

    def _line(self, line: bytes) -> Reply | None:
        match = _LINE.fullmatch(line) if len(line) > 3 else _LINE.fullmatch(line + b" ")
        if match is None:
            raise ProtocolError(f"not an SMTP reply: {line[:80]!r}")
        code, sep, text = match.groups()
        if self._code is not None and code != self._code:
            raise ProtocolError("reply code changed inside a multi-line reply")
        self._code = code
        self._lines.append(text)
        if len(self._lines) > self.lines_max:
            raise ProtocolError("too many reply lines")
        if sep == b"-":
            return None
        lines = [piece.decode("utf-8", "replace") for piece in self._lines]
        self._code = None
        self._lines = []
        value = int(code)
        enhanced = None
        found = _ENHANCED.match(lines[-1])
        if found is not None and found.group(1)[0] == str(value)[0]:
            enhanced = found.group(1)
            lines = [_ENHANCED.sub("", piece, count=1) for piece in lines]
        return Reply(value, enhanced, tuple(lines))


def command(verb: str, argument: str = "") -> bytes:
    """``VERB argument`` CRLF; ValueError if the argument holds CR, LF or NUL."""
    if any(char in argument for char in "\r\n\0"):
        raise ValueError(f"{verb}: control character in {argument!r}")
    line = f"{verb} {argument}" if argument else verb
    return line.encode("utf-8") + b"\r\n"


def mail_from(sender: str, params: list[str]) -> bytes:
    return command("MAIL", " ".join([f"FROM:<{sender}>", *params]))


def rcpt_to(recipient: str, params: list[str]) -> bytes:
    return command("RCPT", " ".join([f"TO:<{recipient}>", *params]))


def extensions(reply: Reply) -> dict[str, str]:
    """The EHLO keywords (upper case) and their parameters."""
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params.strip()
    return found


class DotStuffer:
    """Content (CRLF lines) in, the DATA stream out: every line starting with a dot
    gets another one, and ``finish`` gives the terminating ``.`` line (after a
    CRLF if the content did not end with one)."""

    def __init__(self) -> None:
        self._line_start = True

    def feed(self, data: bytes) -> bytes:
        if not data:
            return data
        out = data.replace(b"\n.", b"\n..")
        if self._line_start and data[:1] == b".":
            out = b"." + out
        self._line_start = data.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        return b".\r\n" if self._line_start else b"\r\n.\r\n"
