"""Clients that keep sending while the daemon is killed under them, and waiting for the queue.

:class:`Senders` runs a few client threads (smtplib, up to ``per_session``
messages per session) that take tokens from a shared supply until it runs
out or they are stopped; a connection that breaks (the daemon died) is
retried after a short pause.  A token is *acknowledged* only when its final
250 arrived: those are the messages the daemon must never lose.
:func:`settle` waits until the queue is empty and the Maildir still.
"""

from __future__ import annotations

import itertools
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from faultlib.daemon import queued_messages
from faultlib.mail import connect, delivered_count, send

__all__ = ["Senders", "endless", "send_all", "settle"]

_BROKEN = (OSError, smtplib.SMTPException)


def endless(prefix: str, size: int = 2048) -> Iterator[str]:
    """``prefix.0.size``, ``prefix.1.size``, ... for ever."""
    return (f"{prefix}.{n}.{size}" for n in itertools.count())


class Senders:
    """``clients`` threads sending the tokens of ``supply`` to 127.0.0.1:``port``."""

    def __init__(
        self, port: int, supply: Iterable[str], clients: int = 4, per_session: int = 20
    ) -> None:
        self.port = port
        self.per_session = per_session
        self.acked: set[str] = set()  # got the final 250
        self.tried: set[str] = set()  # sent at least MAIL FROM for it
        self.refused: Counter[int] = Counter()  # reply codes other than 250, per code
        self.broken = 0  # sessions that ended in a broken connection
        self.first_ack = threading.Event()  # set at the first 250
        self._supply = iter(supply)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"sender-{i}", daemon=True)
            for i in range(clients)
        ]

    def _next(self) -> str | None:
        with self._lock:
            if self._stop.is_set():
                return None
            tok = next(self._supply, None)
            if tok is None:
                self._stop.set()
            else:
                self.tried.add(tok)
            return tok

    def _session(self, client: smtplib.SMTP) -> bool:
        """Send up to ``per_session`` messages; False when the supply is done."""
        for _ in range(self.per_session):
            tok = self._next()
            if tok is None:
                return False
            reply = send(client, tok)
            with self._lock:
                if reply.accepted:
                    self.acked.add(tok)
                    self.first_ack.set()
                else:
                    self.refused[reply.code] += 1
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = connect(self.port, timeout=10.0)
            except _BROKEN:
                time.sleep(0.05)
                continue
            try:
                more = self._session(client)
                client.quit()
                if not more:
                    return
            except _BROKEN:
                with self._lock:
                    self.broken += 1
                time.sleep(0.05)
            finally:
                client.close()

    def start(self) -> Senders:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


def send_all(port: int, tokens: Iterable[str], clients: int = 4) -> Senders:
    """Send every token (``clients`` sessions at once) and return the senders, done."""
    senders = Senders(port, tokens, clients).start()
    senders.join()
    return senders


def settle(spool: Path, maildir: Path, timeout: float, still: float = 1.0) -> bool:
    """Wait until the queue holds no message and the Maildir has not changed for
    ``still`` seconds; False if that did not happen within ``timeout``."""
    deadline = time.monotonic() + timeout
    last = -1
    since = time.monotonic()
    while time.monotonic() < deadline:
        count = delivered_count(maildir)
        if count != last or queued_messages(spool):
            last = count
            since = time.monotonic()
        elif time.monotonic() - since >= still:
            return True
        time.sleep(0.05)
    return False
