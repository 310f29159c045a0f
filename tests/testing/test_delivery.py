"""InboxDelivery: the inbox keeps the order in which the messages were delivered."""

from __future__ import annotations

import io
import threading
from typing import BinaryIO, cast

import trio
import trio.testing

from mta.delivery.result import Outcome, Result
from mta.envelope import Envelope, EnvelopeKind
from mta.spool.spool import Spool
from mta.testing import Inbox
from mta.testing.delivery import INBOX_ACTION, InboxDelivery
from tests.envelopes import make_envelope


class _Store:
    """A spool's store whose message 1 reads slowly: until message 2 has been read."""

    def __init__(self) -> None:
        self.second_read = threading.Event()

    def open_message(self, msgid: int) -> BinaryIO:
        if msgid == 1:
            assert self.second_read.wait(10), "message 2 was never read"
        else:
            self.second_read.set()
        return io.BytesIO(b"Subject: message %d\r\n\r\nx\r\n" % msgid)

    def committed_envelopes(self, msgid: int) -> list[Envelope]:
        return [_envelope(msgid)]


class _Spool:
    def __init__(self) -> None:
        self.store = _Store()


def _envelope(msgid: int) -> Envelope:
    return make_envelope(
        f"to{msgid}@example.org",
        msgid=msgid,
        id=msgid << 32 | 1,
        kind=EnvelopeKind.MDA,
        dispatcher=INBOX_ACTION,
    )


async def _refuse(envelope: Envelope) -> Result:
    raise AssertionError(f"the catch-all delivered {envelope.id:016x} elsewhere")


async def test_a_later_message_read_first_still_comes_second() -> None:
    inbox = Inbox()
    deliver = InboxDelivery(_refuse, cast(Spool, _Spool()), inbox)
    outcomes: list[Outcome] = []

    async def one(msgid: int) -> None:
        outcomes.append((await deliver(_envelope(msgid))).outcome)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 1)
            await trio.testing.wait_all_tasks_blocked()  # message 1 is being read
            nursery.start_soon(one, 2)
    assert outcomes == [Outcome.OK, Outcome.OK]
    assert [(m.subject, m.rcpt_tos) for m in inbox.messages] == [
        ("message 1", ("to1@example.org",)),
        ("message 2", ("to2@example.org",)),
    ]
