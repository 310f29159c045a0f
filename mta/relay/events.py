"""What the relay client asks its driver to do, and what it reports.

Every input method of :class:`~mta.relay.client.Client` returns a list of these,
to be handled in order.  Recipients are named by their position: the index of
the transaction the client was given and of the recipient in it.  A client
made with ``reports=True`` also says what a relay action's filters are told
(:class:`Report`, see :mod:`mta.relay.reports`).
"""

from __future__ import annotations

import attrs

from mta.delivery.result import Result
from mta.filters.events import ReportPayload

__all__ = [
    "Close",
    "Event",
    "RecipientResult",
    "Report",
    "Send",
    "SendContent",
    "SessionFailed",
    "StartTls",
    "TransactionDone",
]


@attrs.frozen
class Send:
    """Write these bytes to the server."""

    data: bytes


@attrs.frozen
class StartTls:
    """Run the TLS handshake now, then call ``tls_established``.  Plaintext the
    server sent after its 220 has been thrown away; the driver must also drop
    anything it has read and not yet fed."""


@attrs.frozen
class SendContent:
    """The server said 354: stream transaction ``transaction``'s content through
    ``content`` (each call's events handled), then call ``end_content``."""

    transaction: int


@attrs.frozen
class RecipientResult:
    """The final word on one recipient in this session.

    ``relayed_dsn``: the remote host took the message without offering DSN
    while the recipient asked for ``NOTIFY=SUCCESS``, so the success notice
    is ours to send ("relayed", RFC 3461 5.2.3)."""

    transaction: int
    recipient: int
    result: Result
    relayed_dsn: bool = False


@attrs.frozen
class TransactionDone:
    """Every recipient of transaction ``transaction`` has its result."""

    transaction: int


@attrs.frozen
class SessionFailed:
    """The session failed (a 421, a malformed reply, TLS or AUTH refused, the
    connection lost or timed out): ``result`` (a temporary failure) applies to
    every ``unsettled`` recipient, as (transaction, recipient) pairs; the driver
    may try them on another host.  No :class:`TransactionDone` follows for the
    transactions it covers: the session is over."""

    result: Result
    unsettled: tuple[tuple[int, int], ...]


@attrs.frozen
class Close:
    """Close the connection; the session is over."""


@attrs.frozen
class Report:
    """An ``smtp-out`` report event of the session, for the action's filters."""

    payload: ReportPayload


Event = (
    Send
    | StartTls
    | SendContent
    | RecipientResult
    | TransactionDone
    | SessionFailed
    | Close
    | Report
)
