"""Delivering over LMTP (RFC 2033): ``lmtp "host:port"`` and ``lmtp "/socket"``.

As OpenSMTPD's ``mail.lmtp``: connect to the destination (``host``, ``host:port``,
``[v6]:port`` over TCP, port 25 by default, or an absolute Unix socket path),
``LHLO``, ``MAIL FROM:<sender>``, one ``RCPT TO``, ``DATA``, the message
dot-stuffed with CRLF line ends, then the one reply the server gives for that
recipient after the final dot.  Any 5xx reply is a permanent failure, anything
else that is not a success (4xx, a malformed reply, the connection failing or
timing out) a temporary one.  The recipient is the local user (``USER``) by
default, the final address with the action's ``rcpt-to`` option.

Replies are parsed strictly: every line of a multi-line reply must carry the
same three-digit code, a line longer than 512 octets or more than 100 lines
is malformed, and their text reaches logs and bounces only as printable text.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

import attrs
import trio

from mta.delivery.result import ESC_OTHER_MAIL_SYSTEM_STATUS, Result
from mta.log import visible
from mta.server.timeouts import scale_from_env

__all__ = ["LmtpError", "LmtpReply", "deliver_lmtp", "dot_stuff", "parse_destination"]

STEP_TIMEOUT = 300.0  # per command and for the data (RFC 5321 client minimums are larger)
MAX_LINE = 512
MAX_LINES = 100
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class LmtpError(Exception):
    """The conversation failed (malformed reply, connection lost)."""


@attrs.frozen
class LmtpReply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return visible(" ".join(self.lines), 400)

    def result(self, ok: bool = False) -> Result:
        """The delivery result this reply means."""
        text = f"{self.code} {self.text}"
        esc = _ENHANCED.match(self.lines[0]) if self.lines else None
        code = ESC_OTHER_MAIL_SYSTEM_STATUS
        if esc is not None and int(esc.group(2)) < 10 and int(esc.group(3)) < 10:
            code = int(esc.group(2)) * 10 + int(esc.group(3))
        if ok and 200 <= self.code < 300:
            return Result.ok(text)
        if 500 <= self.code < 600:
            return Result.permfail(f"Error ({text})", code)
        return Result.tempfail(f"Error ({text})", code)


def parse_destination(destination: str) -> tuple[str, int] | str:
    """``(host, port)`` for TCP or the socket path; ValueError when malformed."""
    if destination.startswith("/"):
        return destination
    if destination.startswith("["):
        host, bracket, rest = destination[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid LMTP destination {destination!r}")
        port_text = rest[1:] if rest else "25"
    elif destination.count(":") == 1:
        host, _, port_text = destination.partition(":")
    elif ":" in destination:
        host, port_text = destination, "25"  # a bare IPv6 address
    else:
        host, port_text = destination, "25"
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid LMTP destination {destination!r}")
    return host, int(port_text)


class _Lines:
    """CRLF (or LF) lines from a stream, bounded."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                raw = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                if len(raw) > MAX_LINE:
                    raise LmtpError("reply line too long")
                return raw.rstrip(b"\r")
            if len(self.buffer) > MAX_LINE:
                raise LmtpError("reply line too long")
            data = await self.stream.receive_some(4096)
            if not data:
                raise LmtpError("connection closed by the LMTP server")
            self.buffer += data

    async def reply(self) -> LmtpReply:
        lines: list[str] = []
        code: int | None = None
        while True:
            raw = await self.line()
            text = raw.decode("utf-8", "replace")
            if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
                raise LmtpError(f"malformed reply line {visible(text, 80)!r}")
            this = int(text[:3])
            if code is not None and this != code:
                raise LmtpError("reply lines with different codes")
            if not 200 <= this <= 599:
                raise LmtpError(f"reply code out of range: {this}")
            code = this
            lines.append(text[4:])
            if len(lines) > MAX_LINES:
                raise LmtpError("reply too long")
            if text[3:4] != "-":
                return LmtpReply(code, tuple(lines))


async def dot_stuff(
    chunks: AsyncIterator[bytes] | Iterable[bytes],
) -> AsyncGenerator[bytes, None]:
    """The message as DATA sends it: CRLF line ends, leading dots doubled, and the
    final ``.`` line."""
    at_line_start = True
    pending_cr = False

    def convert(chunk: bytes) -> bytes:
        nonlocal at_line_start, pending_cr
        out = bytearray()
        for line in chunk.splitlines(keepends=True):
            if pending_cr:
                pending_cr = False
                if line.startswith(b"\n"):
                    line = line[1:]
                    if not line:
                        continue
            if at_line_start and line.startswith(b"."):
                out += b"."
            if line.endswith(b"\r\n"):
                out += line
                at_line_start = True
            elif line.endswith(b"\n"):
                out += line[:-1] + b"\r\n"
                at_line_start = True
            elif line.endswith(b"\r"):
                out += line[:-1] + b"\r\n"
                pending_cr = True  # an LF may follow in the next chunk
                at_line_start = True
            else:
                out += line
                at_line_start = False
        return bytes(out)

    if isinstance(chunks, AsyncIterator):
        async for chunk in chunks:
            yield convert(chunk)
    else:
        for chunk in chunks:
            yield convert(chunk)
    yield b".\r\n" if at_line_start else b"\r\n.\r\n"


async def _open(destination: str) -> trio.abc.Stream:
    target = parse_destination(destination)
    if isinstance(target, str):
        return await trio.open_unix_socket(target)
    host, port = target
    return await trio.open_tcp_stream(host, port)


async def deliver_lmtp(
    destination: str,
    *,
    lhlo: str,
    sender: str,
    rcpt: str,
    chunks: AsyncIterator[bytes] | Iterable[bytes],
    timeout: float | None = None,
) -> Result:
    """Deliver one message to one recipient; never raises for the server's doings."""
    step = STEP_TIMEOUT * scale_from_env() if timeout is None else timeout
    try:
        with trio.fail_after(step):
            stream = await _open(destination)
    except (OSError, ValueError, trio.TooSlowError) as exc:
        return Result.tempfail(f"Error (cannot connect to LMTP server {destination}: {exc})")
    try:
        async with stream:
            return await _converse(stream, step, lhlo, sender, rcpt, chunks)
    except trio.TooSlowError:
        return Result.tempfail("Error (LMTP server timed out)")
    except (LmtpError, trio.BrokenResourceError, OSError) as exc:
        return Result.tempfail(f"Error ({visible(str(exc), 200)})")


async def _converse(
    stream: trio.abc.Stream,
    step: float,
    lhlo: str,
    sender: str,
    rcpt: str,
    chunks: AsyncIterator[bytes] | Iterable[bytes],
) -> Result:
    lines = _Lines(stream)

    async def command(text: str, expect: int) -> LmtpReply | Result:
        with trio.fail_after(step):
            if text:
                await stream.send_all(text.encode("utf-8", "surrogateescape") + b"\r\n")
            reply = await lines.reply()
        if reply.code != expect and not (expect == 250 and 200 <= reply.code < 300):
            return reply.result()
        return reply

    for text, expect in (
        ("", 220),
        (f"LHLO {lhlo}", 250),
        (f"MAIL FROM:<{sender}>", 250),
        (f"RCPT TO:<{rcpt}>", 250),
        ("DATA", 354),
    ):
        reply = await command(text, expect)
        if isinstance(reply, Result):
            await _quit(stream)
            return reply
    with trio.fail_after(step * 4):
        async with contextlib.aclosing(dot_stuff(chunks)) as stuffed:
            async for data in stuffed:
                if data:
                    await stream.send_all(data)
        final = await lines.reply()
    await _quit(stream)
    return final.result(ok=True)


async def _quit(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError, OSError):
        await stream.send_all(b"QUIT\r\n")
