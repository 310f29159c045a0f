"""Listening sockets: binding, the local socket, and the session cap (and
what it logs when it fills up)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from mta.config.model import Listener
from mta.server.listeners import (
    SATURATION_REPEAT,
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


def gate_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "mta.smtpd"]
    caplog.clear()
    return lines


def held_at_limit(gate: SessionGate) -> bool:
    """The gate is not full, yet still counts as saturated."""
    return not gate.full and gate.saturated


async def test_a_full_gate_is_logged_once_and_so_is_its_end(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtpd")
    gate = SessionGate(20, detail=lambda: "192.0.2.1 holds 15")
    for _ in range(19):
        assert gate.try_acquire()
    assert (gate.saturated, gate_lines(caplog)) == (False, [])
    await gate.acquire()
    assert (gate.saturated, gate_lines(caplog)) == (
        True,
        [
            "smtp: session limit reached: all 20 sessions taken, new connections wait"
            " (192.0.2.1 holds 15)"
        ],
    )
    await trio.sleep(30)
    gate.release()  # one place free: still at the limit, as far as the log goes
    assert held_at_limit(gate) and gate_lines(caplog) == []
    gate.release()  # 18 of 20: nine tenths
    assert (gate.saturated, gate_lines(caplog)) == (
        False,
        ["smtp: sessions below the limit again (18 of 20), after 30.0 s at the limit"],
    )


async def test_a_gate_that_fills_up_often_warns_once_a_minute(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtpd")
    gate = SessionGate(2)
    assert gate.try_acquire() and gate.try_acquire()
    assert len(gate_lines(caplog)) == 1
    for _ in range(3):  # below and at the limit again, within the minute
        gate.release()
        gate.release()
        await trio.sleep(5)
        assert gate.try_acquire() and gate.try_acquire()
    assert gate_lines(caplog) == [
        "smtp: sessions below the limit again (1 of 2), after 0.0 s at the limit"
    ]
    gate.check()
    assert gate_lines(caplog) == []  # not a minute since the warning
    await trio.sleep(SATURATION_REPEAT)
    gate.check()  # still full: said now, with the times that went unsaid
    assert gate_lines(caplog) == [
        "smtp: session limit reached: all 2 sessions taken 60 s ago, new connections wait;"
        " 2 more time(s) since the last warning"
    ]
    gate.check()
    assert gate_lines(caplog) == []


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


async def test_bind_port_zero_reports_the_port_the_system_picked() -> None:
    bound = bind_listener(Listener("127.0.0.1", port=0))
    try:
        [b] = bound
        assert b.port == b.socket.getsockname()[1] != 0
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
