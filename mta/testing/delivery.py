"""How a test server's messages reach its :class:`~mta.testing.inbox.Inbox`.

A test server runs mta's own queue and local delivery; :class:`InboxDelivery`
wraps the local deliverer (:data:`~mta.scheduler.runner.Deliver`):

- with no configuration, the server runs :func:`catch_all_config`: every
  recipient is accepted (a ``virtual`` catch-all onto one user of a private
  ``userbase``, so no system user is ever looked up or written as) and every
  envelope goes to the reserved action :data:`INBOX_ACTION`, which the wrapper
  delivers into the inbox itself: one :class:`ReceivedMessage` per message,
  with all its recipients, never a file written, whoever runs the tests (a
  message that fails its checks goes to ``corrupt/``, as after any delivery);
- with a configuration, each delivery the configured actions make is done as
  the daemon does it, and each one that succeeds also adds the message to the
  inbox, with that envelope's recipient.

Messages enter the inbox in the order they were delivered (at once for the
catch-all, so the order the queue took them), although each one's content is
read in a worker thread and a later read may finish first.
"""

from __future__ import annotations

import datetime
import os

import trio

from mta import threads
from mta.delivery.result import Outcome, Result
from mta.envelope import Envelope
from mta.errors import CorruptMessage, MTAError
from mta.log import get_logger, visible
from mta.scheduler.runner import Deliver
from mta.spool.spool import Spool
from mta.testing.inbox import Inbox, ReceivedMessage

__all__ = ["INBOX_ACTION", "InboxDelivery", "catch_all_config"]

INBOX_ACTION = "mta.testing inbox"  # reserved: no configuration of the user gets it
log = get_logger("testing")

_USERS = "mta-testing-users"
_USER = "inbox"


def catch_all_config(listen: str = "127.0.0.1") -> str:
    """The configuration of a server given none: it listens on ``listen`` on a
    port the system picks and takes mail for any recipient into the inbox."""
    uid = os.getuid() or 65534  # never root: the rules refuse to deliver as root
    gid = os.getgid() or 65534
    return (
        f"listen on {listen} port 0\n"
        f'table {_USERS} {{ "{_USER}" = "{uid}:{gid}:/nonexistent" }}\n'
        f'action "{INBOX_ACTION}" maildir userbase <{_USERS}> virtual {{ "@" = "{_USER}" }}\n'
        f'match from any for any action "{INBOX_ACTION}"\n'
    )


def _read(spool: Spool, msgid: int, every: bool) -> tuple[bytes, list[str]]:
    """The content of ``msgid`` and (``every``) the recipients of all its
    envelopes, in the order the client gave them (blocking)."""
    with spool.store.open_message(msgid) as stream:
        raw = stream.read()
    rcpts: list[str] = []
    for envelope in spool.store.committed_envelopes(msgid) if every else ():
        if str(envelope.rcpt) not in rcpts:
            rcpts.append(str(envelope.rcpt))
    return raw, rcpts


class _InTurn:
    """Tickets handed out in one order, done in that order: :meth:`wait` returns
    once every earlier ticket is :meth:`done` (used, or given up)."""

    def __init__(self) -> None:
        self._issued = 0
        self._next = 0  # the earliest ticket not done
        self._done: set[int] = set()
        self._moved = trio.Event()

    def take(self) -> int:
        self._issued += 1
        return self._issued - 1

    async def wait(self, ticket: int) -> None:
        while self._next < ticket:
            await self._moved.wait()

    def done(self, ticket: int) -> None:
        self._done.add(ticket)
        while self._next in self._done:
            self._done.remove(self._next)
            self._next += 1
        self._moved.set()
        self._moved = trio.Event()


class InboxDelivery:
    """A local deliverer that also fills ``inbox`` (see the module docstring)."""

    def __init__(self, inner: Deliver, spool: Spool, inbox: Inbox) -> None:
        self.inner = inner
        self.spool = spool
        self.inbox = inbox
        self._taken: dict[int, trio.Event] = {}  # catch-all messages added (or being)
        self._turns = _InTurn()  # the order of the inbox (see the module docstring)

    async def __call__(self, envelope: Envelope) -> Result:
        if envelope.dispatcher == INBOX_ACTION:
            return await self._catch_all(envelope)
        result = await self.inner(envelope)
        if result.outcome is Outcome.OK:
            try:
                await self._add(envelope, every=False)
            except (MTAError, OSError) as exc:  # delivered all the same
                log.warning("test inbox: cannot add evpid=%016x: %s", envelope.id, exc)
        return result

    async def _catch_all(self, envelope: Envelope) -> Result:
        done = self._taken.get(envelope.msgid)
        if done is not None:
            await done.wait()  # the message is in the inbox (with this recipient)
            return Result.ok("Delivered to the test inbox")
        done = self._taken[envelope.msgid] = trio.Event()
        try:
            await self._add(envelope, every=True)
        except CorruptMessage:
            del self._taken[envelope.msgid]
            raise  # the queue runner moves it to corrupt/, as after any delivery
        except (MTAError, OSError) as exc:
            del self._taken[envelope.msgid]  # the next attempt tries again
            return Result.tempfail(f"Error ({visible(str(exc), 300)})")
        finally:
            done.set()
        return Result.ok("Delivered to the test inbox")

    async def _add(self, envelope: Envelope, *, every: bool) -> None:
        ticket = self._turns.take()
        try:
            raw, rcpts = await threads.run_sync(_read, self.spool, envelope.msgid, every)
            if str(envelope.rcpt) not in rcpts:
                rcpts.insert(0, str(envelope.rcpt))
            await self._turns.wait(ticket)
            self.inbox.add(
                ReceivedMessage(
                    id=f"{envelope.msgid:08x}" if every else f"{envelope.id:016x}",
                    mail_from=str(envelope.sender),
                    rcpt_tos=tuple(rcpts),
                    raw=raw,
                    received=datetime.datetime.fromtimestamp(envelope.ctime, datetime.UTC),
                )
            )
        finally:
            self._turns.done(ticket)
