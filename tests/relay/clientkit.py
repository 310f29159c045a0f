"""Helpers for the relay client's tests: sessions set up to a given point, and
the events they return taken apart."""

from __future__ import annotations

from collections.abc import Sequence

from mta.delivery.result import Outcome, Result
from mta.relay.client import Client, ClientConfig, TlsPolicy
from mta.relay.events import Event, RecipientResult, Send, SessionFailed
from mta.relay.timeouts import Step
from mta.relay.transaction import Recipient, Transaction

HELO = "relay.example.org"
GREETING = b"220 mx.example.net ESMTP\r\n"
EHLO_BASIC = b"250-mx.example.net\r\n250 8BITMIME\r\n"
EHLO_PIPELINING = b"250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
OK = b"250 2.0.0 Ok\r\n"

__all__ = [
    "EHLO_BASIC",
    "EHLO_PIPELINING",
    "GREETING",
    "HELO",
    "OK",
    "failure",
    "message",
    "outcomes",
    "ready",
    "sent",
    "step",
]


def message(*recipients: str, sender: str = "alice@example.org", **kwargs: object) -> Transaction:
    """A transaction for ``recipients`` (default: bob)."""
    rcpts = tuple(Recipient(r) for r in recipients or ("bob@example.net",))
    return Transaction(sender, rcpts, **kwargs)  # type: ignore[arg-type]


def ready(
    transactions: Sequence[Transaction],
    ehlo: bytes = EHLO_BASIC,
    *,
    keepalive: bool = False,
    **config: object,
) -> tuple[Client, list[Event]]:
    """A plaintext client past the greeting and EHLO; the events of the EHLO reply."""
    config.setdefault("tls", TlsPolicy.NONE)
    settings = ClientConfig(HELO, **config)  # type: ignore[arg-type]
    client = Client(settings, transactions, keepalive=keepalive)
    verb = b"LHLO" if config.get("lmtp") else b"EHLO"
    assert client.receive_data(GREETING) == [Send(verb + b" relay.example.org\r\n")]
    return client, client.receive_data(ehlo)


def step(client: Client) -> Step | None:
    """``client.step``, read afresh (mypy keeps a property's narrowing otherwise)."""
    return client.step


def sent(events: Sequence[Event]) -> bytes:
    """Everything the events ask to write."""
    return b"".join(event.data for event in events if isinstance(event, Send))


def outcomes(events: Sequence[Event]) -> list[tuple[int, int, Outcome, str, str]]:
    """(transaction, recipient, outcome, status, text) of each recipient result."""
    return [
        (e.transaction, e.recipient, e.result.outcome, e.result.status, e.result.text)
        for e in events
        if isinstance(e, RecipientResult)
    ]


def failure(events: Sequence[Event]) -> tuple[Result, tuple[tuple[int, int], ...]]:
    """The one SessionFailed among ``events``."""
    (found,) = [e for e in events if isinstance(e, SessionFailed)]
    return found.result, found.unsettled
