"""Reload's socket plan: kept sockets take their new listener, new ones are
bound, a ``port 0`` line unchanged keeps the port it got, and a failure
closes what it bound and leaves the running ones."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mta.config.model import Config, Listener
from mta.daemon.reload import ReloadResult, rebind
from mta.server.listeners import Bound, ListenError, bind_listener, bind_unix


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_rebind_keeps_opens_and_rolls_back(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    running = bind_listener(Listener("127.0.0.1", port=first))
    local = await bind_unix(str(tmp_path / "enqueue.sock"))
    current = {b.key: b for b in [*running, local]}
    opened: list[Bound] = []
    try:
        tagged = Listener("127.0.0.1", port=first, tag="NEW")
        bounds, opened = rebind(
            Config(listeners=(tagged, Listener("127.0.0.1", port=second))), current
        )
        by_key = {b.key: b for b in bounds}
        assert set(by_key) == {("127.0.0.1", first), ("127.0.0.1", second), local.key}
        kept = by_key["127.0.0.1", first]
        assert kept.socket is running[0].socket and kept.listener is tagged
        assert [b.key for b in opened] == [("127.0.0.1", second)]
        # a port in use: what this reload bound is closed, the running ones stay
        with socket.create_server(("127.0.0.1", 0)) as taken:
            busy = taken.getsockname()[1]
            third = free_port()
            config = Config(
                listeners=(
                    Listener("127.0.0.1", port=first),
                    Listener("127.0.0.1", port=third),
                    Listener("127.0.0.1", port=busy),
                )
            )
            with pytest.raises(ListenError, match=f"127.0.0.1:{busy}"):
                rebind(config, current)
        with socket.create_server(("127.0.0.1", third)):
            pass  # closed again
        assert running[0].socket.fileno() >= 0
    finally:
        for b in [*running, *opened]:
            b.socket.close()
        await local.aclose()


def test_the_same_address_twice_in_one_configuration_fails() -> None:
    port = free_port()
    running = bind_listener(Listener("127.0.0.1", port=port))
    try:
        twice = Config(
            listeners=(Listener("127.0.0.1", port=port), Listener("127.0.0.1", port=port))
        )
        with pytest.raises(ListenError, match="Address already in use"):
            rebind(twice, {b.key: b for b in running})
    finally:
        running[0].socket.close()


def test_result_summary() -> None:
    assert ReloadResult().summary() == ""
    assert ReloadResult(opened=("127.0.0.1:25",), closed=("[::1]:25",)).summary() == (
        ", listening on 127.0.0.1:25, closed [::1]:25"
    )
    assert not ReloadResult(errors=("x",)).ok


def test_a_port_0_line_unchanged_keeps_its_socket_and_its_port() -> None:
    line = Listener("127.0.0.1", port=0)
    running = bind_listener(line) + bind_listener(line)  # the same line twice: two ports
    assert running[0].port != running[1].port and 0 not in {b.port for b in running}
    current = {b.key: b for b in running}
    opened: list[Bound] = []
    try:
        again = Listener("127.0.0.1", port=0, line=7)  # moved in the file: the same line
        bounds, opened = rebind(Config(listeners=(again, again)), current)
        assert opened == []
        assert [(b.socket, b.port) for b in bounds] == [(b.socket, b.port) for b in running]
        assert all(b.listener is again for b in bounds)
        # one line left: it keeps the first socket (the second closes at the switch)
        bounds, opened = rebind(Config(listeners=(again,)), current)
        assert opened == [] and [b.socket for b in bounds] == [running[0].socket]
    finally:
        for b in [*running, *opened]:
            b.socket.close()


def test_a_port_0_line_changed_gets_a_new_socket() -> None:
    running = bind_listener(Listener("127.0.0.1", port=0))
    current = {b.key: b for b in running}
    opened: list[Bound] = []
    try:
        tagged = Listener("127.0.0.1", port=0, tag="NEW")
        bounds, opened = rebind(Config(listeners=(tagged,)), current)
        [new] = opened
        assert bounds == [new] and new.listener is tagged
        assert new.socket is not running[0].socket and new.port not in (0, running[0].port)
        # the port the system picked, now written in the line: the socket is kept
        fixed = Listener("127.0.0.1", port=running[0].port)
        bounds, reopened = rebind(Config(listeners=(fixed,)), current)
        assert reopened == [] and [b.socket for b in bounds] == [running[0].socket]
    finally:
        for b in [*running, *opened]:
            b.socket.close()
