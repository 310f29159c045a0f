"""The registration step of the handshake: after smtpd's ``config|ready``, a filter
writes ``register|report|...`` and ``register|filter|...`` lines and then
``register|ready`` (``lka_filter.c`` ``processor_register`` / ``processor_io``).

:class:`Registration` consumes the parsed messages until ``register|ready`` and then
gives the :class:`Registered` result.  Anything else before ready is a
:class:`~mta.errors.FilterProtocolError` (OpenSMTPD: "Non-register message before
register|ready", a fatal error; mta: the driver calls the filter failed).  Unknown
subsystems, events and phases were already refused by :mod:`mta.filters.parse`.

``register|report|<subsystem>|*`` stands for every event of
:class:`~mta.filters.protocol.ReportEvent`, as OpenSMTPD expands it.  A
registration made twice counts once (OpenSMTPD would send such a filter every event
twice).  A filter may register nothing; it then receives nothing.

Send a filter only the reports and requests it registered: libopensmtpd
(``osmtpd_newline``) dies on any other line ("received unregistered line").
"""

from __future__ import annotations

import attrs

from mta.errors import FilterProtocolError
from mta.filters.messages import FilterMessage, RegisterFilter, RegisterReady, RegisterReport
from mta.filters.protocol import FilterPhase, ReportEvent, Subsystem

__all__ = ["Registered", "Registration"]


@attrs.frozen
class Registered:
    """What a filter registered: the report events it wants, per subsystem, and the
    ``smtp-in`` phases it filters."""

    reports: frozenset[tuple[Subsystem, ReportEvent]] = frozenset()
    phases: frozenset[FilterPhase] = frozenset()

    def wants_report(self, subsystem: Subsystem, event: ReportEvent) -> bool:
        """Whether to send this filter the ``event`` reports of ``subsystem``."""
        return (subsystem, event) in self.reports

    def reports_for(self, subsystem: Subsystem) -> frozenset[ReportEvent]:
        """The events of ``subsystem`` this filter wants."""
        return frozenset(event for sub, event in self.reports if sub is subsystem)


class Registration:
    """Feed it each message the filter writes until :meth:`feed` returns True."""

    def __init__(self) -> None:
        self._reports: set[tuple[Subsystem, ReportEvent]] = set()
        self._phases: set[FilterPhase] = set()
        self._done = False

    @property
    def done(self) -> bool:
        """``register|ready`` was received."""
        return self._done

    def feed(self, message: FilterMessage) -> bool:
        """Take one message; True once it was ``register|ready``."""
        if self._done:
            raise FilterProtocolError("message after register|ready", repr(message))
        if isinstance(message, RegisterReady):
            self._done = True
        elif isinstance(message, RegisterReport):
            events = ReportEvent if message.event is None else (message.event,)
            self._reports.update((message.subsystem, event) for event in events)
        elif isinstance(message, RegisterFilter):
            self._phases.add(message.phase)
        else:
            raise FilterProtocolError("non-register message before register|ready", repr(message))
        return self._done

    def result(self) -> Registered:
        """What was registered; only once :attr:`done`."""
        if not self._done:
            raise FilterProtocolError("the filter has not written register|ready")
        return Registered(frozenset(self._reports), frozenset(self._phases))
