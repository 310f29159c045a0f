"""Events the sans-IO SMTP server (:mod:`mta.smtp.server`) hands to its driver.

Requests (``Hello``, ``StartTls``, ``AuthCredentials``, ``MailFrom``, ``RcptTo``,
``DataStart``, ``DataEnd``, ``Ask``) wait for the driver's decision: ``accept()`` /
``accept_message()`` or ``reject(reply)``.  The others are notifications.
"""

from __future__ import annotations

import enum

import attrs

from mta.envelope import Address
from mta.reply import Reply
from mta.smtp.params import MailParams, RcptParams

__all__ = [
    "NEED_DATA",
    "REQUESTS",
    "Ask",
    "AuthCredentials",
    "ConnectionClosed",
    "DataChunk",
    "DataEnd",
    "DataStart",
    "Event",
    "Hello",
    "MailFrom",
    "NeedData",
    "RcptTo",
    "StartTls",
    "TransactionReset",
]


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`."""

    NEED_DATA = "need-data"


NEED_DATA = NeedData.NEED_DATA
"""``next_event()`` has nothing to give before more bytes arrive: flush, then read."""


@attrs.frozen
class Hello:
    """``HELO`` / ``EHLO`` with a syntactically valid domain or address literal."""

    verb: str  # "HELO" or "EHLO"
    domain: str


@attrs.frozen
class StartTls:
    """``STARTTLS`` was accepted by the state machine; accepting it sends the 220."""


@attrs.frozen
class AuthCredentials:
    """A complete SASL PLAIN or LOGIN exchange; the driver checks the credentials."""

    mechanism: str  # "PLAIN" or "LOGIN"
    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class MailFrom:
    sender: Address  # NULL_ADDRESS for <>
    params: MailParams


@attrs.frozen
class RcptTo:
    rcpt: Address
    params: RcptParams


@attrs.frozen
class DataStart:
    """``DATA`` with at least one accepted recipient; accepting it sends the 354."""


@attrs.frozen
class DataChunk:
    """Message content: complete lines, CRLF-terminated, dot-unstuffed."""

    data: bytes


@attrs.frozen
class DataEnd:
    """The final ``.``: ``size`` in RFC 1870 octets; ``error`` is the reply to give
    when the content was refused while streaming (too big, NUL), else None."""

    size: int
    error: Reply | None = None


@attrs.frozen
class Ask:
    """A command the driver asked to see first (:attr:`ServerConnection.ask`:
    RSET, NOOP, QUIT, HELP, WIZ, for the filters' phases of the same names):
    ``accept()`` carries it out as usual, ``reject(reply)`` refuses it."""

    verb: str
    args: str | None


@attrs.frozen
class TransactionReset:
    """``RSET``: the state machine already replied; drop the transaction."""


@attrs.frozen
class ConnectionClosed:
    """The session is over; flush ``data_to_send()`` and close.

    ``reason`` is a log word: ``quit``, ``disconnect``, ``line-too-long``,
    ``command-too-long``, ``pipelining``, ``starttls-injection``, ``rejected``."""

    reason: str


Event = (
    Hello
    | StartTls
    | AuthCredentials
    | MailFrom
    | RcptTo
    | DataStart
    | DataChunk
    | DataEnd
    | Ask
    | TransactionReset
    | ConnectionClosed
)

REQUESTS = (Hello, StartTls, AuthCredentials, MailFrom, RcptTo, DataStart, DataEnd, Ask)
"""The events that wait for ``accept()`` / ``reject()``."""
