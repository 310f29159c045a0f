"""A session without sockets: a :class:`~mta.server.session.Session` on one end
of ``trio.testing.memory_stream_pair``, a scripted client on the other, the
real rules, spool and watchdog behind it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import trio
import trio.testing

from mta.config.load import load_text
from mta.config.model import Listener
from mta.daemon.generation import Generation, Shared, open_generation
from mta.server.listeners import Bound
from mta.server.session import Session
from mta.server.timeouts import Timeouts
from mta.server.watchdog import Watchdog
from mta.spool.spool import Spool

__all__ = ["Client", "generation_of", "make_generation", "open_session"]


class Client:
    """The client's end: send lines, read whole replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def reply(self) -> str:
        """One whole reply (all its lines), as text."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                data = await self.stream.receive_some(4096)
                if not data:
                    raise EOFError(self.buffer)
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    async def command(self, line: str) -> str:
        await self.stream.send_all(line.encode() + b"\r\n")
        return await self.reply()


async def make_generation(text: str, spool_dir: Path) -> Generation:
    """The generation of configuration ``text`` on a new spool (its tables to close)."""
    spool = await Spool.open(spool_dir)
    config = load_text(text, check_interfaces=False).config
    shared = Shared(spool, None, None, Timeouts(), Watchdog(1.0))
    return open_generation(config, shared)


@contextlib.asynccontextmanager
async def generation_of(text: str, spool_dir: Path) -> AsyncIterator[Generation]:
    """:func:`make_generation`, its tables closed at the end."""
    generation = await make_generation(text, spool_dir)
    try:
        yield generation
    finally:
        generation.tables.close()


async def open_session(
    generation: Generation,
    nursery: trio.Nursery,
    listener: Listener | None = None,
    *,
    banner: bool = True,
) -> tuple[Client, Session]:
    """A session on a memory stream, from 127.0.0.1, and its client end (its
    220 read, unless ``banner`` is False); the session's watchdog stops when
    the session ends."""
    listener = listener or generation.config.listeners[0]
    with socket.socket() as placeholder:  # a Bound needs one; the session never uses it
        bound = Bound(listener, placeholder, "127.0.0.1", 2525, True)
    server_end, client_end = trio.testing.memory_stream_pair()
    served = Session(
        generation.services, generation.endpoint(bound), server_end, ("127.0.0.1", 40000)
    )
    watching = trio.CancelScope()

    async def watchdog() -> None:
        with watching:
            await generation.services.watchdog.run()

    nursery.start_soon(watchdog)

    async def run_then_stop() -> None:
        await served.run()
        watching.cancel()  # the session is over: the client still reads what it left

    nursery.start_soon(run_then_stop)
    client = Client(client_end)
    if banner:
        assert (await client.reply()).startswith("220 ")
    return client, served
