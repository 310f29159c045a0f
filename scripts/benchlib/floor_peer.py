"""The floor peer: the least a trio SMTP server can do and still be as durable.

Run as ``python -m benchlib.floor_peer --port N --maildir DIR``.  It answers
every command with a fixed reply, parses nothing, checks nothing, logs nothing,
and writes each message exactly as the aiosmtpd peer does (``tmp/``, fsync,
rename into ``new/``, fsync of ``new/``, in a worker thread) before its 250.
No real MTA can be faster than this on the same machine, so ``mta``'s rate
against it says how much of the time per message is ``mta``'s own, and its
rate against aiosmtpd's says what any durable server could hope for.
"""

from __future__ import annotations

import argparse
import signal
import socket
from pathlib import Path

import trio

from benchlib.aiosmtpd_peer import Maildir

__all__ = ["main", "serve"]

END = b"\r\n.\r\n"


class _Closed(Exception):
    pass


async def _session(conn: socket.socket, maildir: Maildir) -> None:
    buffer = b""

    async def more() -> None:
        nonlocal buffer
        while True:
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(conn)
                continue
            if not data:
                raise _Closed
            buffer += data
            return

    async def line() -> bytes:
        nonlocal buffer
        while b"\r\n" not in buffer:
            await more()
        first, _, buffer = buffer.partition(b"\r\n")
        return first.upper()

    try:
        conn.sendall(b"220 floor ESMTP\r\n")
        while True:
            command = await line()
            if command.startswith((b"EHLO", b"HELO")):
                conn.sendall(b"250-floor\r\n250 8BITMIME\r\n")
            elif command.startswith((b"MAIL", b"RCPT", b"RSET", b"NOOP")):
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif command == b"DATA":
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                while END not in b"\r\n" + buffer:
                    await more()
                whole = b"\r\n" + buffer
                cut = whole.index(END)
                content, buffer = whole[2:cut] + b"\r\n", whole[cut + len(END) :]
                await trio.to_thread.run_sync(maildir.deliver, maildir.unique_name(), content)
                conn.sendall(b"250 2.0.0 Ok: queued\r\n")
            elif command == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"500 5.5.1 Unknown command\r\n")
    except (_Closed, OSError):
        pass
    finally:
        trio.lowlevel.notify_closing(conn)
        conn.close()


async def serve(host: str, port: int, maildir: Path, backlog: int) -> None:
    store = Maildir(maildir)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    listener.setblocking(False)
    print(f"floor peer: listening on {host}:{port}", flush=True)
    async with trio.open_nursery() as nursery:

        async def stop() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(stop)
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(listener)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(_session, conn, store)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="floor_peer", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", type=Path, required=True)
    p.add_argument("--backlog", type=int, default=1024)
    args = p.parse_args(argv)
    trio.run(serve, args.host, args.port, args.maildir, args.backlog)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
