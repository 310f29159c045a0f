"""How a test server's messages reach its inbox, through the public names and
``mtactl``: a message damaged in the queue is no delivery (it goes to
``corrupt/``, logged, as in the daemon), and the next one arrives as usual; and
InboxDelivery itself: the inbox keeps the order the messages were delivered in."""

from __future__ import annotations

import io
import smtplib
import threading
import time
from typing import BinaryIO, cast

import trio
import trio.testing

from mta.delivery.result import Outcome, Result
from mta.envelope import Envelope, EnvelopeKind
from mta.spool.spool import Spool
from mta.testing import Inbox, MailServer
from mta.testing.delivery import INBOX_ACTION, InboxDelivery
from tests.envelopes import make_envelope
from tests.testing.control import mtactl, spool

DAMAGED = b"Subject: damaged\r\n\r\nThe body, to be damaged.\r\n"


def test_a_damaged_message_goes_to_corrupt_and_the_log_says_so() -> None:
    with MailServer() as server:
        assert mtactl(server, "pause", "mda").returncode == 0
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], DAMAGED)
        queue = spool(server) / "queue"
        [message] = [p for b in queue.iterdir() for p in b.iterdir() if len(p.name) == 8]
        data = message.read_bytes()
        at = data.index(b"to be damaged") + 3
        with open(message, "r+b") as file:  # one bit flipped in the body
            file.seek(at)
            file.write(bytes([data[at] ^ 0x01]))
        assert mtactl(server, "resume", "mda").returncode == 0
        deadline = time.monotonic() + 10
        while not any("queue: quarantine" in line for line in server.log_lines):
            assert time.monotonic() < deadline, server.log_lines
            time.sleep(0.02)
        lines = server.log_lines
        # moved by a worker thread, which logged it to this server
        [moved] = [line for line in lines if line.startswith("spool: quarantine")]
        assert f"corrupt/{message.name}" in moved and "checksum" in moved
        assert not any("result=TempFail" in line for line in lines)  # never retried
        assert (spool(server) / "corrupt" / message.name / message.name).is_file()  # kept
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: sound\r\n\r\nx\r\n")
        assert server.inbox.wait().subject == "sound"
        assert [m.subject for m in server.inbox.messages] == ["sound"]


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
