"""The byte stream of an accepted TCP connection, lighter than ``trio.SocketStream``.

An SMTP session alternates: send a reply, wait for the next command.  trio's
stream yields to the scheduler on every operation, even one that completes at
once (a reply sent into an empty socket buffer), which costs several scheduler
rounds per command.  :class:`ConnectionStream` does the system call first and
waits only when the socket is not ready; to stay fair it still honours
cancellation on every call and yields for real after :data:`YIELD_EVERY`
operations in a row that did not wait, so a client that pipelines a flood of
commands cannot hold the event loop or outrun its deadlines.  A read tries ``recv``
first even right after a reply went out: under load the client's answer is
usually there by the time the session reads again, and waiting first would
cost a registration with epoll and a scheduler round on every command.

It owns a plain non-blocking :class:`socket.socket` (``stream.socket``: the
session reads its addresses and sets options on it) and maps errors as trio
does: a dead connection is :class:`trio.BrokenResourceError`, use after close
:class:`trio.ClosedResourceError`.  One task at a time may send and one may
receive (the session's single task does both).
"""

from __future__ import annotations

import errno
import socket

import trio

__all__ = ["RECEIVE_DEFAULT", "YIELD_EVERY", "ConnectionStream"]

RECEIVE_DEFAULT = 65536
YIELD_EVERY = 16


class ConnectionStream(trio.abc.Stream):
    """A connected, non-blocking stream socket as a trio stream."""

    __slots__ = ("_closed", "_eager", "socket")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._closed = False
        self._eager = 0  # operations in a row that completed without waiting

    @classmethod
    def take(cls, stream: trio.SocketStream) -> ConnectionStream:
        """Take over the socket of a freshly accepted ``stream`` (which is then unusable)."""
        fd = stream.socket.detach()
        return cls(socket.socket(fileno=fd))

    async def _ready(self) -> None:
        """After an operation that did not wait: notice cancellation, and yield now and then."""
        self._eager += 1
        if self._eager >= YIELD_EVERY:
            self._eager = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the connection was closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        waited = False
        with memoryview(data) as view:
            sent = 0
            total = len(view)
            while sent < total:
                try:
                    with view[sent:] as rest:
                        sent += self.socket.send(rest)
                except BlockingIOError:
                    waited = True
                    self._eager = 0
                    await trio.lowlevel.wait_writable(self.socket)
                    self._check_open()
                except OSError as exc:
                    raise _broken(exc) from exc
        if not waited:
            await self._ready()

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self.socket)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        size = RECEIVE_DEFAULT if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        while True:
            try:
                data = self.socket.recv(size)
            except BlockingIOError:
                self._eager = 0
                await trio.lowlevel.wait_readable(self.socket)
                self._check_open()
                try:
                    return self.socket.recv(size)
                except BlockingIOError:
                    continue  # woken without data (spurious): wait again
                except OSError as exc:
                    raise _broken(exc) from exc
            except OSError as exc:
                raise _broken(exc) from exc
            await self._ready()
            return data

    def close(self) -> None:
        """Close at once (no checkpoint: also in a cancelled scope, raising nothing)."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno in (errno.EBADF, errno.ENOTSOCK):
        return trio.ClosedResourceError("the connection was closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")
