"""The outcome of one delivery attempt, as every delivery method reports it.

OpenSMTPD's three results (``mda_log``: ``result=Ok|TempFail|PermFail``), the
text that goes into the log's ``stat=`` and, for failures, into the envelope's
error line and the bounce, and the enhanced status code (RFC 3463) of the
failure as OpenSMTPD stores it: a class (2, 4, 5) and ``subject * 10 + detail``.
A relayed envelope's result also says where it went (:class:`Relayed`: the
``source`` and ``relay`` of the ``mta delivery`` log line) and whether a
``NOTIFY=SUCCESS`` notice is ours to send.
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "ESC_DELIVERY_TIME_EXPIRED",
    "ESC_OTHER_MAIL_SYSTEM_STATUS",
    "ESC_ROUTING_LOOP_DETECTED",
    "Outcome",
    "Relayed",
    "Result",
]

ESC_OTHER_MAIL_SYSTEM_STATUS = 30  # x.3.0
ESC_ROUTING_LOOP_DETECTED = 46  # x.4.6
ESC_DELIVERY_TIME_EXPIRED = 47  # x.4.7


class Outcome(enum.Enum):
    OK = "Ok"
    TEMPFAIL = "TempFail"
    PERMFAIL = "PermFail"


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


@attrs.frozen
class Result:
    """What became of one envelope's delivery attempt; ``relayed`` is set for
    relay attempts (not part of equality: it describes, it does not decide)."""

    outcome: Outcome
    text: str = "Delivered"
    esc_class: int = 2
    esc_code: int = 0
    relayed: Relayed | None = attrs.field(default=None, eq=False)

    @classmethod
    def ok(cls, text: str = "Delivered") -> Result:
        return cls(Outcome.OK, text, 2, 0)

    @classmethod
    def tempfail(cls, text: str, code: int = ESC_OTHER_MAIL_SYSTEM_STATUS) -> Result:
        return cls(Outcome.TEMPFAIL, text, 4, code)

    @classmethod
    def permfail(cls, text: str, code: int = ESC_OTHER_MAIL_SYSTEM_STATUS) -> Result:
        return cls(Outcome.PERMFAIL, text, 5, code)

    @property
    def status(self) -> str:
        """The enhanced status code as text, ``5.3.0``."""
        return f"{self.esc_class}.{self.esc_code // 10}.{self.esc_code % 10}"
