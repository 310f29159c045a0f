"""The accept loops on real loopback sockets: a client over its share of the
sessions is answered 421 and closed at once, the others are served, and a
place freed is counted back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from mta.config.model import Listener
from mta.daemon.generation import Generation
from mta.daemon.listening import Listening
from mta.server.listeners import SessionGate, bind_listener
from mta.server.peers import ClientLimit
from tests.server.memory_session import generation_of

CONFIG = """
listen on 127.0.0.1 port 2525 hostname mx.example.test
action "local" maildir "/tmp/unused/%{user.username}"
match from any for domain "localhost" action "local"
"""


@pytest.fixture
async def generation(tmp_path: Path) -> AsyncIterator[Generation]:
    async with generation_of(CONFIG, tmp_path / "spool") as gen:
        yield gen


async def first_line(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while not data.endswith(b"\r\n"):
            chunk = await stream.receive_some(1024)
            if not chunk:
                break
            data += chunk
    return data


async def test_a_client_over_its_share_is_refused_at_once(
    generation: Generation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtpd")
    listener = Listener("127.0.0.1", port=0, hostname="mx.example.test")
    (bound,) = bind_listener(listener)
    port = bound.socket.getsockname()[1]
    clients = ClientLimit(10, 2)
    listening = Listening(generation, [bound], SessionGate(10), clients)
    async with trio.open_nursery() as sessions, trio.open_nursery() as accepting:
        listening.start(accepting, sessions)
        sessions.start_soon(generation.services.watchdog.run)
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        for stream in held:
            assert (await first_line(stream)).startswith(b"220 mx.example.test ESMTP")
        over = await trio.open_tcp_stream("127.0.0.1", port)
        assert await first_line(over) == (
            b"421 4.7.0 mx.example.test Too many connections from your address, try again later\r\n"
        )
        with trio.fail_after(5):
            assert await over.receive_some(1024) == b""  # closed
        assert clients.count("127.0.0.1") == 2 and listening.gate.active == 2
        await held[0].send_all(b"QUIT\r\n")
        assert (await first_line(held[0])).startswith(b"221 ")
        with trio.fail_after(5):
            while clients.count("127.0.0.1") != 1:
                await trio.sleep(0.01)
        again = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await first_line(again)).startswith(b"220 ")  # its place was given back
        for stream in (*held, over, again):
            await stream.aclose()
        with trio.fail_after(5):
            while listening.gate.active:
                await trio.sleep(0.01)
        assert len(clients) == 0
        await listening.aclose()
        accepting.cancel_scope.cancel()
        sessions.cancel_scope.cancel()
    refusals = [r.getMessage() for r in caplog.records if "too many connections" in r.getMessage()]
    assert refusals == [
        "smtp: too many connections from 127.0.0.1 (2 sessions, the most one client may hold):"
        " refused with 421"
    ]


async def test_a_proxy_listener_is_not_limited_per_client(generation: Generation) -> None:
    """Every connection to a proxy-v2 listener comes from the proxy."""
    (bound,) = bind_listener(Listener("127.0.0.1", port=0, proxy_v2=True))
    port = bound.socket.getsockname()[1]
    clients = ClientLimit(10, 1)
    listening = Listening(generation, [bound], SessionGate(10), clients)
    async with trio.open_nursery() as sessions, trio.open_nursery() as accepting:
        listening.start(accepting, sessions)
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
        with trio.fail_after(5):
            while listening.gate.active < 3:
                await trio.sleep(0.01)
        assert len(clients) == 0
        for stream in streams:
            await stream.aclose()
        await listening.aclose()
        accepting.cancel_scope.cancel()
        sessions.cancel_scope.cancel()
