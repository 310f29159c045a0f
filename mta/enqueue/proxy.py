"""``mta-sendmail -bs``: SMTP on standard input and output, relayed to the daemon.

The bytes go both ways unchanged between the caller and the local socket, so
the caller talks to the daemon's own SMTP server (a local, authenticated
session).  When the caller closes its side the socket is half-closed so the
server sees the end; when the server closes, the relay ends.  If the daemon
cannot be reached nothing is written and the caller decides what to do
(:mod:`mta.enqueue.standin`, or :data:`UNAVAILABLE`).
"""

from __future__ import annotations

import os
import socket

import trio

from mta.net.unixpath import socket_address

__all__ = ["UNAVAILABLE", "relay_stdio"]

UNAVAILABLE = b"421 4.3.0 Mail service not available: the mta daemon is not running\r\n"
_CHUNK = 64 * 1024


async def _pump(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    while True:
        try:
            data = await source.receive_some(_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        if not data:
            return
        try:
            await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return


async def relay_stdio(path: str, stdin_fd: int = 0, stdout_fd: int = 1) -> int | None:
    """Relay ``stdin_fd`` / ``stdout_fd`` to the Unix socket at ``path``; an exit
    status, or None when the socket does not answer (nothing was read or written)."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket_address(path) as address:
            await sock.connect(address)
    except OSError:
        sock.close()
        return None
    server = trio.SocketStream(sock)
    caller_in = trio.lowlevel.FdStream(os.dup(stdin_fd))
    caller_out = trio.lowlevel.FdStream(os.dup(stdout_fd))
    async with server, caller_in, caller_out, trio.open_nursery() as nursery:

        async def upstream() -> None:
            await _pump(caller_in, server)
            try:
                await server.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                nursery.cancel_scope.cancel()

        async def downstream() -> None:
            await _pump(server, caller_out)
            nursery.cancel_scope.cancel()

        nursery.start_soon(upstream)
        nursery.start_soon(downstream)
    return os.EX_OK
