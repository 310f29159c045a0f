"""The messages an in-process test server received: :class:`Inbox`.

A test thread reads it (``inbox.messages``, ``inbox.wait(...)``) while the
server's trio thread adds to it, so every access takes one lock, and waiting
uses a condition variable, never polling.  A trio task (the web inbox) waits
for a change with :meth:`Inbox.changed`, which returns at once when the inbox
moved past the version it last saw.

An inbox may be bounded (the daemon's web inbox is: it runs for months): at
most ``keep`` messages and ``max_bytes`` bytes of content, the oldest dropped
first, and :attr:`Inbox.dropped` counts what was dropped since the last
:meth:`Inbox.clear`.  A test server's inbox is unbounded.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import trio

if TYPE_CHECKING:  # the email package comes with the first message read
    from email.message import EmailMessage

__all__ = ["Inbox", "ReceivedMessage"]


@attrs.frozen
class ReceivedMessage:
    """One message as the server received it: the envelope and the bytes."""

    id: str  # unique in its inbox: the spool's message id, or a counter
    mail_from: str  # the envelope sender, "" for <>
    rcpt_tos: tuple[str, ...]  # the envelope recipients, as given
    raw: bytes  # the content as received (CRLF line ends, dot-unstuffed)
    received: datetime.datetime  # when it was received (UTC)

    @property
    def message(self) -> EmailMessage:
        """The content parsed (``email.policy.default``, with ``\n`` line ends)."""
        import email.policy
        from email.message import EmailMessage
        from email.parser import BytesParser

        parser = BytesParser(policy=email.policy.default)
        parsed = parser.parsebytes(self.raw.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


def _matches(message: ReceivedMessage, to: str | None, subject: str | None) -> bool:
    if to is not None and to.lower() not in (r.lower() for r in message.rcpt_tos):
        return False
    return subject is None or subject in message.subject


def _describe(messages: Iterable[ReceivedMessage]) -> str:
    found = [f"to {', '.join(m.rcpt_tos)} subject {m.subject!r}" for m in messages]
    return "; ".join(found) if found else "nothing"


class Inbox:
    """Every message received so far, oldest first; safe to use from any thread.
    ``keep`` / ``max_bytes``: the most messages / bytes of content kept (None:
    no bound); beyond them the oldest messages are dropped."""

    def __init__(self, *, keep: int | None = None, max_bytes: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.keep = keep
        self.max_bytes = max_bytes
        self._lock = threading.Condition()
        self._messages: collections.deque[ReceivedMessage] = collections.deque()
        self._bytes = 0  # of the content of the messages kept
        self._dropped = 0
        self._version = 0
        self._watchers: list[Callable[[], Any]] = []

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A copy of the messages received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def dropped(self) -> int:
        """How many messages the bound dropped (oldest first) since the last clear."""
        with self._lock:
            return self._dropped

    @property
    def size(self) -> int:
        """The bytes of content of the messages kept."""
        with self._lock:
            return self._bytes

    @property
    def version(self) -> int:
        """A number that changes whenever a message arrives or the inbox is cleared."""
        with self._lock:
            return self._version

    def get(self, message_id: str) -> ReceivedMessage | None:
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def add(self, message: ReceivedMessage) -> None:
        """A message received (called by the server)."""
        with self._lock:
            self._messages.append(message)
            self._bytes += len(message.raw)
            while self._messages and self._over():
                self._bytes -= len(self._messages.popleft().raw)
                self._dropped += 1
            self._changed()

    def _over(self) -> bool:
        """True when the messages kept exceed the bound."""
        too_many = self.keep is not None and len(self._messages) > self.keep
        return too_many or (self.max_bytes is not None and self._bytes > self.max_bytes)

    def clear(self) -> None:
        """Forget every message received so far (and how many were dropped)."""
        with self._lock:
            self._messages.clear()
            self._bytes = self._dropped = 0
            self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._lock.notify_all()
        watchers, self._watchers = self._watchers, []
        for wake in watchers:
            wake()

    def wait(
        self,
        *,
        to: str | None = None,
        subject: str | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> Any:
        """The first message to ``to`` (an envelope recipient, any case) whose
        subject contains ``subject`` (a list of the first ``count`` such
        messages when ``count > 1``), waiting up to ``timeout`` seconds for it;
        TimeoutError naming what arrived instead."""
        if count < 1:
            raise ValueError("count must be at least 1")
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for m in self._messages if _matches(m, to, subject)]
                if len(found) >= count:
                    return found[0] if count == 1 else found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    wanted = []
                    if to is not None:
                        wanted.append(f"to {to}")
                    if subject is not None:
                        wanted.append(f"with subject containing {subject!r}")
                    what = " ".join(wanted) or "any message"
                    raise TimeoutError(
                        f"{count} message(s) {what} not received within {timeout:g} s;"
                        f" received: {_describe(self._messages)}"
                    )
                self._lock.wait(left)

    async def changed(self, seen: int) -> int:
        """Wait (in trio) until the version differs from ``seen``; the new version."""
        token = trio.lowlevel.current_trio_token()
        event = trio.Event()

        def wake() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)

        with self._lock:
            if self._version != seen:
                return self._version
            self._watchers.append(wake)
        try:
            await event.wait()
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._watchers.remove(wake)  # cancelled before any change
        return self.version
