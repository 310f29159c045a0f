"""The registration step: register lines up to register|ready, nothing else."""

from __future__ import annotations

import pytest

from mta.errors import FilterProtocolError
from mta.filters.messages import (
    FilterDataLine,
    FilterMessage,
    FilterReport,
    FilterResult,
    RegisterFilter,
    RegisterReady,
    RegisterReport,
)
from mta.filters.parse import FilterOutputParser
from mta.filters.protocol import Decision, FilterPhase, ReportEvent, Subsystem, Timestamp
from mta.filters.registration import Registered, Registration

# What Debian's filter-dkimsign 0.5 (libopensmtpd 0.7) writes after config|ready.
DKIMSIGN = (
    b"register|filter|smtp-in|data-line\n"
    b"register|filter|smtp-in|commit\n"
    b"register|report|smtp-in|link-disconnect\n"
    b"register|report|smtp-in|tx-begin\n"
    b"register|report|smtp-in|tx-commit\n"
    b"register|report|smtp-in|tx-rollback\n"
    b"register|ready\n"
)


def register(data: bytes) -> Registered:
    parser = FilterOutputParser()
    parser.feed(data)
    registration = Registration()
    while (message := parser.next_message()) is not None:
        if registration.feed(message):
            break
    return registration.result()


def test_dkimsign_registration() -> None:
    registered = register(DKIMSIGN)
    assert registered.phases == {FilterPhase.DATA_LINE, FilterPhase.COMMIT}
    assert registered.reports_for(Subsystem.SMTP_IN) == {
        ReportEvent.LINK_DISCONNECT,
        ReportEvent.TX_BEGIN,
        ReportEvent.TX_COMMIT,
        ReportEvent.TX_ROLLBACK,
    }
    assert registered.reports_for(Subsystem.SMTP_OUT) == frozenset()
    assert registered.wants_report(Subsystem.SMTP_IN, ReportEvent.TX_BEGIN)
    assert not registered.wants_report(Subsystem.SMTP_IN, ReportEvent.LINK_CONNECT)
    assert not registered.wants_report(Subsystem.SMTP_OUT, ReportEvent.TX_BEGIN)


def test_star_is_every_event_of_that_subsystem() -> None:
    registered = register(
        b"register|report|smtp-out|*\nregister|report|smtp-in|timeout\nregister|ready\n"
    )
    assert registered.reports_for(Subsystem.SMTP_OUT) == frozenset(ReportEvent)
    assert registered.reports_for(Subsystem.SMTP_IN) == {ReportEvent.TIMEOUT}
    assert registered.phases == frozenset()


def test_twice_counts_once() -> None:
    registered = register(b"register|filter|smtp-in|helo\n" * 2 + b"register|ready\n")
    assert registered.phases == {FilterPhase.HELO}


def test_nothing_registered() -> None:
    assert register(b"register|ready\n") == Registered()


def test_feed_says_when_ready() -> None:
    registration = Registration()
    assert registration.feed(RegisterFilter(FilterPhase.CONNECT)) is False
    assert not registration.done
    assert registration.feed(RegisterReady()) is True
    assert registration.done


@pytest.mark.parametrize(
    "message",
    [
        FilterResult(1, 2, Decision.PROCEED),
        FilterDataLine(1, 2, b"x"),
        FilterReport(Timestamp(1, 0), Subsystem.SMTP_IN, 1, "x"),
    ],
)
def test_anything_else_before_ready_is_an_error(message: FilterMessage) -> None:
    registration = Registration()
    registration.feed(RegisterReport(Subsystem.SMTP_IN, None))
    with pytest.raises(
        FilterProtocolError, match=r"^non-register message before register\|ready: "
    ):
        registration.feed(message)


def test_nothing_after_ready() -> None:
    registration = Registration()
    registration.feed(RegisterReady())
    with pytest.raises(FilterProtocolError, match=r"^message after register\|ready: "):
        registration.feed(RegisterFilter(FilterPhase.HELO))


def test_no_result_before_ready() -> None:
    registration = Registration()
    registration.feed(RegisterFilter(FilterPhase.HELO))
    with pytest.raises(FilterProtocolError, match=r"^the filter has not written register\|ready$"):
        registration.result()


def test_unknown_phase_fails_in_the_parser_before_registration() -> None:
    with pytest.raises(FilterProtocolError, match="unknown filter phase"):
        register(b"register|filter|smtp-in|bdat\nregister|ready\n")
