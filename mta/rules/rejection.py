"""Refusing a recipient at RCPT time: the error that carries the reply, and the
replies OpenSMTPD gives (``lka_session.c``), each with an enhanced status code.

OpenSMTPD answers ``550 Invalid recipient`` and ``451 Temporary failure``
without an enhanced code; mta adds ``5.1.1`` and ``4.3.0`` because RFC 2034
wants one on every reply once ENHANCEDSTATUSCODES is announced.  The original
recipient is appended as OpenSMTPD does: ``550 5.1.1 Invalid recipient: <a@b>``.
"""

from __future__ import annotations

import re

from mta.envelope import Address
from mta.errors import MTAError, PermanentFailure, TemporaryFailure
from mta.reply import Reply

__all__ = [
    "RecipientDeferred",
    "RecipientRefused",
    "RecipientRejected",
    "error_reply",
    "expansion_failure",
    "invalid_recipient",
    "temporary_failure",
]

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)")


class RecipientRejected(MTAError):
    """A recipient is refused; the server sends :attr:`reply` as is.

    Raised as :class:`RecipientRefused` (5xx, also a PermanentFailure) or
    :class:`RecipientDeferred` (4xx, also a TemporaryFailure); build one with
    :meth:`of`."""

    def __init__(self, reply: Reply, reason: str = "") -> None:
        super().__init__(reason or reply.text)
        self.reply = reply
        self.reason = reason or reply.text

    @staticmethod
    def of(reply: Reply, reason: str = "") -> RecipientRejected:
        """The subclass that fits the reply's class."""
        if reply.temporary:
            return RecipientDeferred(reply, reason)
        return RecipientRefused(reply, reason)


class RecipientRefused(RecipientRejected, PermanentFailure):
    """A permanent refusal (5xx)."""


class RecipientDeferred(RecipientRejected, TemporaryFailure):
    """A temporary refusal (4xx): the client may try again later."""


def _who(rcpt: Address) -> str:
    # smtp_session.c: the user part, then "@domain" when there is one
    if not rcpt.local:
        return ""
    return str(rcpt) if rcpt.domain else rcpt.local


def invalid_recipient(rcpt: Address) -> Reply:
    """No rule, a ``reject`` rule, or an unknown local user."""
    return Reply.of(550, "5.1.1", f"Invalid recipient: <{_who(rcpt)}>")


def temporary_failure(rcpt: Address) -> Reply:
    """A lookup failed (table, rule or user database)."""
    return Reply.of(451, "4.3.0", f"Temporary failure: <{_who(rcpt)}>")


def expansion_failure(rcpt: Address, *, temporary: bool) -> Reply:
    """Alias, virtual or ``.forward`` expansion failed (``424 4.2.4`` / ``524 5.2.4``)."""
    if temporary:
        return Reply.of(424, "4.2.4", f"Mailing list expansion problem: <{_who(rcpt)}>")
    return Reply.of(524, "5.2.4", f"Mailing list expansion problem: <{_who(rcpt)}>")


def error_reply(code: int, message: str, rcpt: Address) -> Reply:
    """The reply of an alias ``error:NXX message`` entry.

    An enhanced code at the start of ``message`` of the same class is used as
    the reply's; otherwise ``N.0.0`` is added."""
    found = _ENHANCED.match(message)
    if found is not None and found.group(1) == str(code // 100):
        enhanced = f"{found.group(1)}.{found.group(2)}.{found.group(3)}"
        message = message[found.end() :]
    else:
        enhanced = f"{code // 100}.0.0"
    text = f"{message}: <{_who(rcpt)}>" if message else f"<{_who(rcpt)}>"
    return Reply.of(code, enhanced, text)
