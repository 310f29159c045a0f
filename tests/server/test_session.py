"""The session driver without sockets: a :class:`~mta.server.session.Session` on
one end of ``trio.testing.memory_stream_pair``, a scripted client on the other,
the real rules, spool and watchdog behind it (as hypercorn tests its server)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
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

CONFIG = """
table users { "bob" = "65534:65534:/nonexistent" }
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/unused/%{user.username}" userbase <users>
match from any for domain "localhost" action "local"
"""


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


@pytest.fixture
async def generation(tmp_path: Path) -> AsyncIterator[Generation]:
    spool = await Spool.open(tmp_path / "spool")
    config = load_text(CONFIG, check_interfaces=False).config
    shared = Shared(spool, None, None, Timeouts(), Watchdog(1.0))
    gen = open_generation(config, shared)
    yield gen
    gen.tables.close()


async def open_session(
    generation: Generation, nursery: trio.Nursery, listener: Listener | None = None
) -> tuple[Client, Session]:
    """A session on a memory stream, from 127.0.0.1, and its client end; the
    nursery is cancelled when the session ends."""
    listener = listener or generation.config.listeners[0]
    with socket.socket() as placeholder:  # a Bound needs one; the session never uses it
        bound = Bound(listener, placeholder, "127.0.0.1", 2525, True)
    server_end, client_end = trio.testing.memory_stream_pair()
    served = Session(
        generation.services, generation.endpoint(bound), server_end, ("127.0.0.1", 40000)
    )
    nursery.start_soon(generation.services.watchdog.run)

    async def run_then_stop() -> None:
        await served.run()
        nursery.cancel_scope.cancel()  # the watchdog too: the test is over

    nursery.start_soon(run_then_stop)
    client = Client(client_end)
    assert (await client.reply()).startswith("220 ")
    return client, served


async def test_a_message_is_committed_with_its_envelopes(generation: Generation) -> None:
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery)
        assert (await client.command("EHLO client.test")).startswith("250-")
        assert served.client.helo == "client.test" and served.client.esmtp
        assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("250 ")
        assert (await client.command("RCPT TO:<bob@localhost>")).startswith("250 ")
        assert (await client.command("DATA")).startswith("354 ")
        reply = await client.command("Subject: hi\r\n\r\nhello\r\n.")
        assert reply.startswith("250 2.0.0 ")
        msgid = int(reply.split()[2], 16)
        assert (await client.command("QUIT")).startswith("221 ")
    store = generation.services.spool.store
    (envelope,) = store.iter_envelopes()
    assert envelope.msgid == msgid and str(envelope.rcpt) == "bob@localhost"
    assert envelope.helo == "client.test" and envelope.sockaddr == "127.0.0.1"
    with store.open_message(msgid) as stream:
        content = stream.read()
    assert content.startswith(b"Received: from client.test")
    assert content.endswith(b"\r\n\r\nhello\r\n")


async def test_refusals_leave_nothing_behind(generation: Generation) -> None:
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery)
        await client.command("EHLO client.test")
        await client.command("MAIL FROM:<alice@example.org>")
        assert (await client.command("RCPT TO:<nobody@elsewhere.test>")).startswith("550 ")
        assert (await client.command("RCPT TO:<bob@localhost>")).startswith("250 ")
        assert (await client.command("DATA")).startswith("354 ")
        await client.stream.send_all(b"Subject: cut\r\n\r\npart of a message")
        await trio.testing.wait_all_tasks_blocked()
        assert served.tx is not None and served.tx.in_data
        await client.stream.aclose()  # gone in the middle of DATA
    assert served.reason == "disconnect"
    store = generation.services.spool.store
    assert list(store.iter_envelopes()) == [] and store.message_ids() == []
    incoming = Path(generation.services.spool.paths.root) / "incoming"
    assert list(incoming.iterdir()) == []
