"""Connection reuse: a relay session kept open for the next message of its plan.

OpenSMTPD's sessions (``mta_session.c``) take the relay's next task when they
finish one, and hang on ``session-keepalive`` (10 s) when there is none, up to
``session-mail-max`` (100) messages.  A :class:`Connection` is that for the
relay agent: one session (:func:`~mta.relay.session.run_session` with a
``keepalive`` client and :meth:`Connection.reuse`) to one address, for one
plan.  Each message it carries is a :class:`Work`: the transaction, where its
content comes from, and, once :attr:`Work.done` is set, its results.

When the session has sent everything, :meth:`Connection.more` waits
``transaction_delay`` seconds (``session-transaction-delay``, 0 by default:
the session takes no message meanwhile), then up to ``keepalive`` seconds
for :meth:`Connection.give` to hand it the next message; the agent learns
which connections wait through ``on_idle``.  When the session ends,
:meth:`Connection.ended` settles every message it had not finished with the
session's failure (or "Relay attempt interrupted" when the session task
itself was cancelled).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import attrs
import trio

from mta.delivery.result import Result
from mta.relay.events import RecipientResult
from mta.relay.session import ContentSource, Reuse, SessionFailure, SessionOutcome
from mta.relay.transaction import Transaction

__all__ = ["Connection", "Work"]

INTERRUPTED = "Relay attempt interrupted"


@attrs.define(eq=False)
class Work:
    """One message for a connection, and what became of it."""

    transaction: Transaction
    content: ContentSource  # called with 0: this message's content
    results: dict[int, RecipientResult] = attrs.Factory(dict)  # by recipient index
    failure: SessionFailure | None = None
    local: str = ""  # our address on the connection
    done: trio.Event = attrs.Factory(trio.Event)

    def result(self, recipient: int) -> Result:
        """The recipient's result (the failure's when the session did not give one)."""
        got = self.results.get(recipient)
        if got is not None:
            return got.result
        return self.failure.result if self.failure is not None else Result.tempfail(INTERRUPTED)

    def relayed_dsn(self, recipient: int) -> bool:
        got = self.results.get(recipient)
        return got is not None and got.relayed_dsn


class Connection:
    """One session kept open between messages; see the module docstring.
    ``on_idle(connection, waiting)`` is told when it starts and stops waiting."""

    def __init__(
        self,
        first: Work,
        *,
        via: str,
        keepalive: float,
        mail_max: int,
        transaction_delay: float = 0,
        on_idle: Callable[[Connection, bool], None] = lambda connection, waiting: None,
    ) -> None:
        self.via = via
        self.keepalive = keepalive
        self.mail_max = mail_max
        self.transaction_delay = transaction_delay
        self.on_idle = on_idle
        self.works = [first]
        self.closed = False
        self._waiting = False
        self._next: Work | None = None
        self._wake = trio.Event()

    def reuse(self) -> Reuse:
        """The session's hooks (:func:`~mta.relay.session.run_session`'s ``reuse``)."""
        return Reuse(self.more, self.done)

    def content(self, index: int) -> AsyncIterator[bytes]:
        """The session's content source: message ``index``'s content."""
        return self.works[index].content(0)

    def give(self, work: Work) -> bool:
        """Hand ``work`` to the session if it is waiting for a message."""
        if not self._waiting or self.closed:
            return False
        self._waiting = False
        self.on_idle(self, False)
        self._next = work
        self._wake.set()
        return True

    def stop(self) -> None:
        """Take no more messages: a waiting session QUITs now, a busy one
        when it has finished (the daemon stops)."""
        self.keepalive = 0
        self._wake.set()

    async def more(self) -> Sequence[Transaction]:
        """The next message's transaction, waited for up to ``keepalive``
        seconds; none (the session QUITs) after ``mail_max`` messages."""
        if len(self.works) >= self.mail_max or self.keepalive <= 0:
            return ()
        if self.transaction_delay > 0:
            with trio.move_on_after(self.transaction_delay):
                await self._wake.wait()  # stop() cuts it short
            if self.keepalive <= 0:
                return ()
        self._waiting = True
        self.on_idle(self, True)
        try:
            with trio.move_on_after(self.keepalive):
                await self._wake.wait()
        finally:
            if self._waiting:
                self._waiting = False
                self.on_idle(self, False)
        work, self._next = self._next, None
        self._wake = trio.Event()
        if work is None:
            return ()
        self.works.append(work)
        return (work.transaction,)

    def done(self, transaction: int, results: Mapping[int, RecipientResult], local: str) -> None:
        """A message has all its results (the session's ``Reuse.done``)."""
        work = self.works[transaction]
        work.results, work.local = dict(results), local
        work.done.set()

    def ended(self, outcome: SessionOutcome | None) -> None:
        """The session is over (``outcome`` None: it was cancelled): settle the rest."""
        self.closed = True
        for index, work in enumerate(self.works):
            if work.done.is_set():
                continue
            if outcome is None:
                work.failure = SessionFailure(Result.tempfail(INTERRUPTED), (), False)
            else:
                work.results = {r: got for (tx, r), got in outcome.results.items() if tx == index}
                work.failure, work.local = outcome.failure, outcome.local
            work.done.set()
        if self._next is not None:  # given, never taken
            self._next.failure = SessionFailure(Result.tempfail(INTERRUPTED), (), True)
            self._next.done.set()
            self._next = None
