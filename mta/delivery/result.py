"""The outcome of one delivery attempt, as every delivery method reports it.

OpenSMTPD's three results (``mda_log``: ``result=Ok|TempFail|PermFail``), the
text that goes into the log's ``stat=`` and, for failures, into the envelope's
error line and the bounce, and the enhanced status code (RFC 3463) as a
:class:`~mta.status.StatusCode`, whose class always follows the outcome (2.x.x,
4.x.x, 5.x.x) and whose subject and detail are kept as given (``5.1.10``,
a remote server's ``5.7.350``).  A relayed envelope's result also says where
it went (:class:`Relayed`: the ``source`` and ``relay`` of the ``mta
delivery`` log line) and whether a ``NOTIFY=SUCCESS`` notice is ours to send.
"""

from __future__ import annotations

import enum

import attrs

from mta.status import StatusCode

__all__ = [
    "ESC_DELIVERY_TIME_EXPIRED",
    "ESC_OTHER_MAIL_SYSTEM_STATUS",
    "ESC_ROUTING_LOOP_DETECTED",
    "Outcome",
    "Relayed",
    "Result",
]

ESC_OTHER_MAIL_SYSTEM_STATUS = StatusCode(4, 3, 0)  # x.3.0, the failures' default
ESC_ROUTING_LOOP_DETECTED = StatusCode(5, 4, 6)  # x.4.6
ESC_DELIVERY_TIME_EXPIRED = StatusCode(5, 4, 7)  # x.4.7
_SUCCESS = StatusCode(2, 0, 0)


class Outcome(enum.Enum):
    OK = "Ok"
    TEMPFAIL = "TempFail"
    PERMFAIL = "PermFail"

    @property
    def status_class(self) -> int:
        """The enhanced status class of this outcome: 2, 4 or 5."""
        return _CLASS[self]


_CLASS = {Outcome.OK: 2, Outcome.TEMPFAIL: 4, Outcome.PERMFAIL: 5}


@attrs.frozen
class Relayed:
    """Where a relay attempt went: our ``source`` address and the ``relay``
    (``"IP (name)"``), empty when no connection was made; ``notify_success``:
    the remote took the message without offering DSN, so a ``NOTIFY=SUCCESS``
    recipient gets a "relayed" notice from us (RFC 3461 6.2.2).  When the
    remote offers DSN, it sends the success notice itself."""

    source: str = ""
    relay: str = ""
    notify_success: bool = False


def _check_esc(instance: Result, attribute: attrs.Attribute[StatusCode], value: StatusCode) -> None:
    if value.class_ != instance.outcome.status_class:
        raise ValueError(f"status {value} does not fit the outcome {instance.outcome.value}")


@attrs.frozen
class Result:
    """What became of one envelope's delivery attempt; ``relayed`` is set for
    relay attempts (not part of equality: it describes, it does not decide).

    Build one with :meth:`ok`, :meth:`tempfail` or :meth:`permfail`: these set
    the code's class from the outcome, so any code can be passed to either."""

    outcome: Outcome
    text: str = "Delivered"
    esc: StatusCode = attrs.field(default=_SUCCESS, validator=_check_esc)
    relayed: Relayed | None = attrs.field(default=None, eq=False)

    @classmethod
    def ok(cls, text: str = "Delivered") -> Result:
        return cls(Outcome.OK, text, _SUCCESS)

    @classmethod
    def tempfail(cls, text: str, code: StatusCode = ESC_OTHER_MAIL_SYSTEM_STATUS) -> Result:
        """A temporary failure: ``code``'s subject and detail as ``4.x.x``."""
        return cls(Outcome.TEMPFAIL, text, code.with_class(4))

    @classmethod
    def permfail(cls, text: str, code: StatusCode = ESC_OTHER_MAIL_SYSTEM_STATUS) -> Result:
        """A permanent failure: ``code``'s subject and detail as ``5.x.x``."""
        return cls(Outcome.PERMFAIL, text, code.with_class(5))

    @property
    def status(self) -> str:
        """The enhanced status code as text, ``5.3.0``."""
        return str(self.esc)
