"""Listening sockets: binding, the local socket, and the session cap."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

from mta.config.model import Listener
from mta.server.listeners import (
    ListenError,
    SessionGate,
    bind_listener,
    bind_unix,
    session_capacity,
)


async def test_gate_blocks_at_capacity() -> None:
    gate = SessionGate(2)
    await gate.acquire()
    await gate.acquire()
    assert gate.active == 2
    with trio.move_on_after(0.05) as scope:
        await gate.acquire()
    assert scope.cancelled_caught
    gate.release()
    with trio.fail_after(1):
        await gate.acquire()
    assert gate.active == 2


def test_capacity_keeps_a_reserve() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 0 < session_capacity() < soft // 2


async def test_bind_loopback_and_conflict() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bound = bind_listener(Listener("127.0.0.1", port=port))
    try:
        assert [(b.address, b.port, b.local) for b in bound] == [("127.0.0.1", port, True)]
        with pytest.raises(ListenError, match=r"cannot listen on 127\.0\.0\.1"):
            bind_listener(Listener("127.0.0.1", port=port))
    finally:
        for b in bound:
            await b.aclose()


async def test_bind_nothing_to_listen_on() -> None:
    with pytest.raises(ListenError, match="no address"):
        bind_listener(Listener("127.0.0.1", family="inet6", port=1))


async def test_unix_socket_replaces_stale_but_not_live(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody answers on
    live = await bind_unix(path)
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o666"
        with pytest.raises(ListenError, match="another server"):
            await bind_unix(path)
    finally:
        await live.aclose()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ListenError, match="not a socket"):
        await bind_unix(str(tmp_path / "file"))
