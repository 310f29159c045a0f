"""Scripted SMTP servers on 127.0.0.1 for the relay session's tests.

:func:`fake_server` listens on a free loopback port and runs ``script`` on
each connection with a :class:`Peer`: the script says what the server sends
and reads what the client wrote, line by line.  Everything the client wrote is
kept (``Peer.received``); an exception in a script is kept in
``FakeServer.errors`` (the test checks it is empty) rather than raised.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

__all__ = [
    "FakeServer",
    "Peer",
    "Script",
    "fake_server",
    "greet",
    "receive_message",
]

LINE_MAX = 100_000


class Peer:
    """The server's side of one connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""
        self.received: list[bytes] = []  # command lines, CRLF stripped
        self.messages: list[bytes] = []  # DATA contents, as sent (dot-stuffed, with the dot)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        if len(self.buffer) > LINE_MAX * 200:
            raise AssertionError("client sent too much")
        return bool(data)

    async def line(self) -> bytes:
        """The next command line (EOFError when the client closed)."""
        while b"\r\n" not in self.buffer:
            if not await self._fill():
                raise EOFError("client closed the connection")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        self.received.append(line)
        return line

    async def expect(self, prefix: bytes) -> bytes:
        line = await self.line()
        if not line.upper().startswith(prefix.upper()):
            raise AssertionError(f"expected {prefix!r}, got {line!r}")
        return line

    async def data(self) -> bytes:
        """The content after 354, through ``CRLF.CRLF`` included."""
        while b"\r\n.\r\n" not in self.buffer:
            if not await self._fill():
                raise EOFError("client closed the connection during DATA")
        cut = self.buffer.index(b"\r\n.\r\n") + 5
        content, self.buffer = self.buffer[:cut], self.buffer[cut:]
        self.messages.append(content)
        return content

    async def starttls(self, context: ssl.SSLContext) -> None:
        """The TLS handshake, server side, after a 220 to STARTTLS."""
        assert not self.buffer, "client pipelined after STARTTLS"
        tls = trio.SSLStream(self.stream, context, server_side=True)
        await tls.do_handshake()
        self.stream = tls

    async def eof(self) -> bool:
        """True when the client closes without sending anything more."""
        try:
            while True:
                if self.buffer:
                    return False
                if not await self._fill():
                    return True
        except trio.BrokenResourceError:
            return True


Script = Callable[[Peer], Awaitable[object]]


@attrs.define
class FakeServer:
    port: int
    peers: list[Peer] = attrs.Factory(list)
    errors: list[BaseException] = attrs.Factory(list)
    connections: int = 0


@asynccontextmanager
async def fake_server(
    script: Script,
    *,
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[FakeServer]:
    """A server running ``script`` per connection (TLS from the start with ``tls``)."""
    server = FakeServer(0)

    async def handle(stream: trio.SocketStream) -> None:
        server.connections += 1
        raw: trio.abc.Stream = stream
        try:
            if tls is not None:
                raw = trio.SSLStream(stream, tls, server_side=True)
                await raw.do_handshake()
            peer = Peer(raw)
            server.peers.append(peer)
            await script(peer)
        except Exception as exc:
            server.errors.append(exc)
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host=host))
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


EHLO_REPLY = (b"PIPELINING", b"8BITMIME")


async def greet(peer: Peer, extensions: Sequence[bytes] = EHLO_REPLY) -> bytes:
    """The banner and the reply to EHLO (or LHLO) offering ``extensions``; the
    EHLO line."""
    await peer.send(b"220 mx.example.test ESMTP fake\r\n")
    line = await peer.line()
    assert line.split()[0].upper() in (b"EHLO", b"LHLO"), line
    lines = [b"mx.example.test", *extensions]
    reply = b"".join(
        b"250" + (b" " if i == len(lines) - 1 else b"-") + text + b"\r\n"
        for i, text in enumerate(lines)
    )
    await peer.send(reply)
    return line


async def receive_transaction(peer: Peer, rcpt_replies: Sequence[bytes] = (b"250 ok",)) -> bytes:
    """MAIL, one RCPT per reply in ``rcpt_replies``, DATA, the content, 250."""
    await peer.expect(b"MAIL FROM:")
    await peer.send(b"250 2.1.0 ok\r\n")
    for reply in rcpt_replies:
        await peer.expect(b"RCPT TO:")
        await peer.send(reply + b"\r\n")
    await peer.expect(b"DATA")
    await peer.send(b"354 go ahead\r\n")
    content = await peer.data()
    await peer.send(b"250 2.0.0 queued as 1234\r\n")
    return content


async def receive_message(peer: Peer, rcpt_replies: Sequence[bytes] = (b"250 ok",)) -> bytes:
    """One transaction (:func:`receive_transaction`), then QUIT."""
    content = await receive_transaction(peer, rcpt_replies)
    await peer.expect(b"QUIT")
    await peer.send(b"221 2.0.0 bye\r\n")
    return content
