"""The queue runner and a message that fails its checks (CorruptMessage): the
message goes to corrupt/ once, every envelope of it leaves the schedule (in
flight, waiting for a retry or not tried yet), nothing is retried and no notice
is sent, whichever reader found the damage (a delivery, a relay attempt, a
notice); the real spool end to end."""

from __future__ import annotations

import logging
import pathlib

import pytest
import trio
import trio.testing

from mta.delivery.result import Result
from mta.envelope import Envelope, EnvelopeKind
from mta.errors import CorruptMessage
from mta.scheduler.runner import Notice, QueueRunner
from mta.spool.spool import Spool
from tests.scheduler.test_runner import (
    CONFIG,
    Agent,
    MemoryStore,
    Notices,
    clock,
    config,
    patient_clock,
    queue,
    started,
)

__all__ = ["patient_clock"]  # a fixture, used by name

REASON = "message file: content checksum mismatch (crc32 0badf00d, trailer 12345678)"


def corrupt_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "queue: quarantine" in r.getMessage()]


async def test_every_envelope_of_a_corrupt_message_leaves_the_queue_without_a_notice(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """user0's delivery finds the damage; user1's, in flight then, fails
    permanently afterwards (no bounce for it either); user2 failed temporarily
    before and waits for its retry (never tried again)."""
    store = MemoryStore()
    attempts: list[str] = []

    async def deliver(envelope: Envelope) -> Result:
        user = envelope.dest.local
        attempts.append(user)
        if user == "user2":
            return Result.tempfail("mailbox busy")
        await trio.sleep(1 if user == "user0" else 5)
        if user == "user0":
            raise CorruptMessage(REASON)
        return Result.permfail("Error (no such mailbox)")

    notices = Notices()
    runner = QueueRunner(config(), store, deliver, notifier=notices, clock=clock)
    caplog.set_level(logging.INFO, logger="mta")
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        envelopes = await queue(store, rcpts=3)
        runner.committed(envelopes)
        await trio.sleep(3)
        msgid = envelopes[0].msgid
        assert list(store.corrupt) == [msgid]
        # user2 (waiting for its retry) is forgotten at once, user1 is still in flight
        assert [e.evpid for e in runner.scheduler.entries()] == [envelopes[1].id]
        await trio.sleep(3 * 86400)  # past every retry and the queue ttl
        nursery.cancel_scope.cancel()
    assert sorted(attempts) == ["user0", "user1", "user2"]  # nothing tried twice
    reason, moved = store.corrupt[msgid]
    assert reason == REASON and sorted(e.id for e in moved) == sorted(e.id for e in envelopes)
    assert notices.sent == [] and len(runner.scheduler) == 0
    assert runner.stats.quarantined == 1
    assert (runner.stats.delivered, runner.stats.permfailed, runner.stats.expired) == (0, 0, 0)
    [line] = corrupt_log(caplog)
    assert f"msgid={msgid:08x}" in line and "envelopes=3" in line and "crc32 0badf00d" in line
    assert "no notice" in line
    delivery_lines = [r.getMessage() for r in caplog.records if "mda delivery" in r.getMessage()]
    assert not any("result=PermFail" in line for line in delivery_lines)


class CorruptNotices(Notices):
    """A notifier whose notices find the damage (they quote the message):
    ``sent`` holds the notices tried."""

    async def notify(self, notice: Notice) -> None:
        await trio.lowlevel.checkpoint()
        self.sent.append(notice)
        raise CorruptMessage(REASON)


def corrupt(envelope: Envelope, attempt: int) -> Result:
    raise CorruptMessage(REASON)


def busy(envelope: Envelope, attempt: int) -> Result:
    return Result.tempfail("450 mailbox busy")


@pytest.mark.parametrize("found_by", ["relay", "delay notice", "expiry notice"])
async def test_the_damage_found_by_a_relay_or_a_notice_quarantines_too(
    autojump_clock: trio.testing.MockClock, found_by: str
) -> None:
    store = MemoryStore()
    notices = CorruptNotices()
    # no delay notice before the 1h ttl of "short" when the warning comes at 4h
    text = CONFIG.replace("bounce warn-interval 1h, 6h", "bounce warn-interval 4h")
    runner = QueueRunner(
        config(text),
        store,
        Agent(busy),
        relay=Agent(corrupt if found_by == "relay" else busy),
        notifier=notices,
        clock=clock,
    )
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        if found_by == "expiry notice":
            envelopes = await queue(store, action="short", rcpts=2)
        else:
            envelopes = await queue(store, action="out", kind=EnvelopeKind.MTA, rcpts=2)
        runner.committed(envelopes)
        await trio.sleep(3 * 86400)
        nursery.cancel_scope.cancel()
    assert list(store.corrupt) == [envelopes[0].msgid]
    assert store.envelopes_by_id == {} and len(runner.scheduler) == 0
    assert runner.stats.quarantined == 1 and runner.stats.notices == 0
    tried = {"relay": set(), "delay notice": {"delayed"}, "expiry notice": {"failed"}}[found_by]
    assert {n.kind for n in notices.sent} == tried  # tried (and refused), never committed


async def test_a_quarantine_that_fails_keeps_the_message_and_tries_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    store.quarantine_fails = True
    agent = Agent(corrupt)
    notices = Notices()
    runner = QueueRunner(config(), store, agent, notifier=notices, clock=clock)
    caplog.set_level(logging.INFO, logger="mta")
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [envelope] = await queue(store)
        runner.committed([envelope])
        await trio.sleep(30)
        assert store.corrupt == {} and list(store.envelopes_by_id) == [envelope.id]
        assert len(runner.scheduler) == 1  # held, not lost, not bounced
        store.quarantine_fails = False
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert list(store.corrupt) == [envelope.msgid] and len(runner.scheduler) == 0
    assert len(agent.attempts) == 2 and notices.sent == []
    assert any("cannot quarantine" in r.getMessage() for r in caplog.records)


async def test_a_damaged_spool_message_goes_to_corrupt_and_is_never_delivered(
    tmp_path: pathlib.Path,
    patient_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real spool: one byte of the message flipped after it was queued; a
    delivery that reads it (as every delivery method does) gets CorruptMessage
    from open_message, before a byte of it."""
    spool = await Spool.open(tmp_path / "spool")
    delivered: list[bytes] = []

    async def deliver(envelope: Envelope) -> Result:
        with await spool.open_message(envelope.msgid) as stream:
            delivered.append(stream.read())
        return Result.ok()

    notices = Notices()
    runner = QueueRunner(config(), spool, deliver, notifier=notices, clock=clock)
    caplog.set_level(logging.INFO, logger="mta")
    envelopes = await queue(spool, rcpts=2)
    msgid = envelopes[0].msgid
    path = tmp_path / "spool" / "queue" / f"{msgid >> 24:02x}" / f"{msgid:08x}"
    data = bytearray(path.read_bytes())
    data[3] ^= 0x20  # in the headers
    path.write_bytes(bytes(data))
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        with trio.fail_after(600):
            while runner.stats.quarantined < 1:
                await trio.sleep(1)
        await trio.sleep(120)
        nursery.cancel_scope.cancel()
    assert delivered == [] and notices.sent == []
    assert await spool.message_ids() == [] and len(runner.scheduler) == 0
    assert sorted(p.name for p in (tmp_path / "spool" / "corrupt" / f"{msgid:08x}").iterdir()) == [
        f"{msgid:08x}"
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith(f'spool: quarantine path="queue/{msgid >> 24:02x}/{msgid:08x}"')
        and "content checksum mismatch" in line
        for line in lines
    )
    [line] = corrupt_log(caplog)
    assert f"msgid={msgid:08x}" in line and "envelopes=2" in line
