"""Tests for mta.daemon.relaying: the relay agent is made at the first relay
attempt, with the configuration in force then, and only once."""

from __future__ import annotations

import io
import socket
from typing import BinaryIO

import pytest
import trio

from mta.daemon.relaying import LazyRelay
from mta.delivery.result import Outcome
from mta.envelope import Address, Envelope
from mta.relay.agent import RelayAgent
from tests.envelopes import make_envelope
from tests.rules.helpers import load, open_tables

CONTENT = b"Subject: hi\r\n\r\nHello.\r\n"


class Messages:
    async def open_message_sized(self, msgid: int) -> tuple[BinaryIO, int]:
        return io.BytesIO(CONTENT), len(CONTENT)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(port: int, helo: str = "first.test") -> str:
    return (
        f'action out relay host "smtp://127.0.0.1:{port}" helo {helo}\nmatch for any action out\n'
    )


def _lazy(text: str, made: list[RelayAgent]) -> LazyRelay:
    config = load(text)
    return LazyRelay(
        config,
        open_tables(config),
        Messages(),  # type: ignore[arg-type]
        hosts=None,
        names=None,
        made=made.append,
    )


def _envelope(evpid: int = 0x700000001) -> Envelope:
    return make_envelope(
        "bob@example.net",
        msgid=7,
        id=evpid,
        dispatcher="out",
        sender=Address.parse("alice@example.org"),
    )


async def test_nothing_is_made_until_the_first_relay_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MTA_DNS", "none")
    made: list[RelayAgent] = []
    port = _closed_port()
    lazy = _lazy(_config(port), made)
    newer = load(_config(port, helo="second.test"))
    scheduled: list[list[int]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(lazy.run)
        lazy.reconfigure(newer, open_tables(newer), None)  # a reload before any relay
        lazy.reschedule = scheduled.append
        await lazy.close_sessions()  # nothing to close
        assert (lazy.agent, made) == (None, [])

        result = await lazy(_envelope())
        assert result.outcome is Outcome.TEMPFAIL  # nothing listens there
        [agent] = made
        assert lazy.agent is agent
        assert agent.config is newer  # the configuration in force, not the first one
        agent.reschedule([1])
        assert scheduled == [[1]]
        assert agent._nursery is not None  # its task runs: sessions are kept between messages
        nursery.cancel_scope.cancel()


async def test_attempts_at_once_share_one_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_DNS", "none")
    made: list[RelayAgent] = []
    lazy = _lazy(_config(_closed_port()), made)
    outcomes: list[Outcome] = []

    async def attempt(evpid: int) -> None:
        outcomes.append((await lazy(_envelope(evpid))).outcome)

    async with trio.open_nursery() as nursery:
        await nursery.start(lazy.run)
        async with trio.open_nursery() as attempts:
            for n in range(5):
                attempts.start_soon(attempt, 0x700000001 + n)
        nursery.cancel_scope.cancel()
    assert len(made) == 1
    assert outcomes == [Outcome.TEMPFAIL] * 5


async def test_a_reload_after_the_agent_reaches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_DNS", "none")
    made: list[RelayAgent] = []
    port = _closed_port()
    lazy = _lazy(_config(port), made)
    await lazy(_envelope())  # (no run: a session per attempt)
    newer = load("mta max-deferred 7\n" + _config(port, helo="second.test"))
    lazy.reconfigure(newer, open_tables(newer), None)
    [agent] = made
    assert agent.config is newer
    assert agent.inventory.max_deferred == 7
