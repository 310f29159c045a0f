"""What a filter writes to smtpd, one frozen class per line type (smtpd-filters(7),
``lka_filter.c`` ``processor_register`` / ``lka_filter_process_response``,
``lka_report_proc``):

- :class:`RegisterReport` ``register|report|<subsystem>|<event or *>``
- :class:`RegisterFilter` ``register|filter|smtp-in|<phase>``
- :class:`RegisterReady` ``register|ready``
- :class:`FilterResult` ``filter-result|<session>|<token>|<decision>[|<parameter>]``
- :class:`FilterDataLine` ``filter-dataline|<session>|<token>|<line>``
- :class:`FilterReport` ``report|<sec.usec>|smtp-in|<session>|<message>``

Since protocol 0.5 a filter writes the session first and the token second, with no
version field (libopensmtpd swaps them only for ``< 0.5``).  Ids are ints; a data
line stays bytes (message content need not be UTF-8); every other text is str.
"""

from __future__ import annotations

import attrs

from mta.filters.protocol import (
    Decision,
    FilterPhase,
    ReportEvent,
    Subsystem,
    Timestamp,
)

__all__ = [
    "FilterDataLine",
    "FilterMessage",
    "FilterReport",
    "FilterResult",
    "RegisterFilter",
    "RegisterMessage",
    "RegisterReady",
    "RegisterReport",
]


@attrs.frozen
class RegisterReport:
    """The filter wants the reports of ``event`` (every event when ``None``,
    written ``*``) of ``subsystem``."""

    subsystem: Subsystem
    event: ReportEvent | None


@attrs.frozen
class RegisterFilter:
    """The filter wants to decide at ``phase`` (always an ``smtp-in`` phase)."""

    phase: FilterPhase


@attrs.frozen
class RegisterReady:
    """The filter has registered everything it wants."""


def _check_parameter(
    instance: FilterResult, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if instance.decision.takes_parameter != (value is not None):
        need = "needs" if instance.decision.takes_parameter else "takes no"
        raise ValueError(f"{instance.decision.value} {need} parameter")


@attrs.frozen
class FilterResult:
    """The answer to a filter request: ``decision`` and, for all but ``proceed``
    and ``junk``, its ``parameter`` (the reply of ``reject`` / ``disconnect``, the
    new argument of ``rewrite``, the text of ``report``; it may contain ``|``)."""

    session: int
    token: int
    decision: Decision
    parameter: str | None = attrs.field(default=None, validator=_check_parameter)


@attrs.frozen
class FilterDataLine:
    """One line of the filter's output for the ``data-line`` phase, without its
    newline, still dot-escaped; ``.`` alone ends the message."""

    session: int
    token: int
    line: bytes


@attrs.frozen
class FilterReport:
    """A report the filter emits on its own, to be relayed as a ``filter-report``
    event (OpenSMTPD 6.8 to 7.8 parse this line but then die on it: the direction
    is lost in ``lka_report_proc``; mta relays it)."""

    timestamp: Timestamp
    subsystem: Subsystem
    session: int
    message: str


RegisterMessage = RegisterReport | RegisterFilter | RegisterReady
FilterMessage = RegisterMessage | FilterResult | FilterDataLine | FilterReport
