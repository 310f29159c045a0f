"""The relay agent and a message that fails its checks: it is sent nowhere (no
connection is made) and every envelope of the batch gets CorruptMessage, for the
runner to quarantine the message; another spool error stays a temporary failure."""

from __future__ import annotations

from typing import BinaryIO

import trio

from mta.delivery.result import Outcome, Result
from mta.envelope import Envelope
from mta.errors import CorruptMessage, SpoolError
from tests.relay.test_agent import MX, Messages, Network, Sessions, accepted, agent, envelope, fixed


class Damaged(Messages):
    def __init__(self, error: SpoolError) -> None:
        super().__init__()
        self.error = error

    async def open_message_sized(self, msgid: int) -> tuple[BinaryIO, int]:
        self.opened += 1
        raise self.error


async def relay_two(error: SpoolError) -> tuple[dict[str, Result | Exception], Damaged, Network]:
    messages = Damaged(error)
    network = Network()
    sessions = Sessions(accepted)
    a = agent("action out relay\n", sessions, fixed(MX), messages=messages, network=network)
    outcomes: dict[str, Result | Exception] = {}

    async def one(env: Envelope) -> None:
        try:
            outcomes[str(env.dest)] = await a(env)
        except CorruptMessage as exc:
            outcomes[str(env.dest)] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, envelope("bob@example.net", 0x700000001))
        nursery.start_soon(one, envelope("carol@example.net", 0x700000002))
    assert sessions.calls == []
    return outcomes, messages, network


async def test_a_corrupt_message_is_sent_nowhere_and_every_caller_gets_the_error() -> None:
    outcomes, messages, network = await relay_two(CorruptMessage("content checksum mismatch"))
    assert messages.opened == 1  # one batch, one open
    assert network.attempts == []  # refused before any connection
    assert sorted(outcomes) == ["bob@example.net", "carol@example.net"]
    for outcome in outcomes.values():
        assert isinstance(outcome, CorruptMessage)
        assert "content checksum mismatch" in str(outcome)


async def test_another_spool_error_is_a_temporary_failure() -> None:
    outcomes, _messages, network = await relay_two(SpoolError("spool: reading message: EIO"))
    assert network.attempts == []
    for outcome in outcomes.values():
        assert isinstance(outcome, Result) and outcome.outcome is Outcome.TEMPFAIL
        assert "Cannot read the message" in outcome.text
