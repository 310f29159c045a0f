"""Delivering over LMTP (RFC 2033): ``lmtp "host:port"`` and ``lmtp "/socket"``.

As OpenSMTPD's ``mail.lmtp``: connect to the destination (``host``, ``host:port``,
``[v6]:port`` over TCP, port 25 by default, or an absolute Unix socket path),
``LHLO``, ``MAIL FROM:<sender>``, one ``RCPT TO``, ``DATA``, the message
(CRLF lines, as the spool holds it) dot-stuffed, then the one reply the server
gives for that recipient after the final dot.  Any 5xx reply is a permanent
failure, anything else that is not a success (4xx, a malformed reply, the
connection failing or timing out) a temporary one.  The recipient is the
local user (``USER``) by default, the final address with the action's
``rcpt-to`` option.

The SMTP client pieces are local submission's (:mod:`mta.enqueue.smtp`):
command lines that refuse CR, LF and NUL in their argument, the strict reply
parser (one code per multi-line reply), bounded here to RFC 5321's 512
octets a line and 100 lines a reply, and the dot-stuffer.  Reply text reaches
logs and bounces only as printable text.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

import trio

from mta.delivery.result import ESC_OTHER_MAIL_SYSTEM_STATUS, Result
from mta.enqueue.smtp import DotStuffer, ProtocolError, ReplyParser, command
from mta.log import visible
from mta.net.unixpath import socket_address
from mta.reply import Reply
from mta.server.timeouts import scale_from_env
from mta.status import StatusCode

__all__ = ["deliver_lmtp", "parse_destination", "reply_result"]

STEP_TIMEOUT = 300.0  # per command and for the data (RFC 5321 client minimums are larger)
MAX_LINE = 512
MAX_LINES = 100


def reply_result(reply: Reply, *, final: bool = False) -> Result:
    """What a reply means for the delivery: success only for the final 2xx."""
    text = visible(reply.text, 400)
    code = StatusCode.parse(reply.enhanced or "") or ESC_OTHER_MAIL_SYSTEM_STATUS
    if final and 200 <= reply.code < 300:
        return Result.ok(text)
    if 500 <= reply.code < 600:
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


class _Replies:
    """Replies read from a stream through :class:`ReplyParser`."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = ReplyParser(line_max=MAX_LINE, lines_max=MAX_LINES)
        self.ready: list[Reply] = []

    async def next(self) -> Reply:
        while not self.ready:
            data = await self.stream.receive_some(4096)
            if not data:
                raise ProtocolError("connection closed by the LMTP server")
            self.ready += self.parser.feed(bytes(data))
        return self.ready.pop(0)


async def _open(destination: str) -> trio.abc.Stream:
    target = parse_destination(destination)
    if isinstance(target, str):
        with socket_address(target) as address:
            return await trio.open_unix_socket(address)
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
    except (ProtocolError, ValueError, trio.BrokenResourceError, OSError) as exc:
        return Result.tempfail(f"Error ({visible(str(exc), 200)})")


async def _converse(
    stream: trio.abc.Stream,
    step: float,
    lhlo: str,
    sender: str,
    rcpt: str,
    chunks: AsyncIterator[bytes] | Iterable[bytes],
) -> Result:
    replies = _Replies(stream)
    for line, expect in (
        (b"", 220),
        (command("LHLO", lhlo), 250),
        (command("MAIL", f"FROM:<{sender}>"), 250),
        (command("RCPT", f"TO:<{rcpt}>"), 250),
        (command("DATA"), 354),
    ):
        with trio.fail_after(step):
            if line:
                await stream.send_all(line)
            reply = await replies.next()
        if reply.code != expect and not (expect == 250 and 200 <= reply.code < 300):
            await _quit(stream)
            return reply_result(reply)
    stuffer = DotStuffer()
    with trio.fail_after(step * 4):
        if isinstance(chunks, AsyncIterator):
            async for chunk in chunks:
                await stream.send_all(stuffer.feed(chunk))
        else:
            for chunk in chunks:
                await stream.send_all(stuffer.feed(chunk))
        await stream.send_all(stuffer.finish())
        final = await replies.next()
    await _quit(stream)
    return reply_result(final, final=True)


async def _quit(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError, OSError):
        await stream.send_all(b"QUIT\r\n")
