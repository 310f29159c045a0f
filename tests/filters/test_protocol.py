"""The filter protocol's vocabulary: timestamps, ids, addresses, field safety, the
enums against OpenSMTPD's tables (lka_filter.c ``smtp_events[]``, ``filter_execs[]``)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.filters.protocol import (
    SMTP_OUT_EVENTS,
    Decision,
    FilterPhase,
    InetAddress,
    ReportEvent,
    Timestamp,
    UnixAddress,
    field,
    format_endpoint,
    format_id,
    format_msgid,
    format_source,
    parse_id,
)


def test_timestamp_is_sec_dot_six_digit_usec() -> None:
    assert str(Timestamp(1796663008, 663741)) == "1796663008.663741"
    assert str(Timestamp(1796663008, 5)) == "1796663008.000005"
    assert str(Timestamp(0, 0)) == "0.000000"


def test_timestamp_of_ns_truncates_to_the_microsecond() -> None:
    assert Timestamp.of_ns(1796663008_663741_999) == Timestamp(1796663008, 663741)


@pytest.mark.parametrize(("sec", "usec"), [(-1, 0), (0, -1), (0, 1_000_000)])
def test_timestamp_out_of_range(sec: int, usec: int) -> None:
    with pytest.raises(ValueError):
        Timestamp(sec, usec)


def test_ids() -> None:
    assert format_id(0xDE49CA932CEADB56) == "de49ca932ceadb56"
    assert format_id(1) == "0000000000000001"
    assert format_msgid(0x188647ED) == "188647ed"
    assert format_msgid(7) == "00000007"
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            format_id(bad)
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError):
            format_msgid(bad)


def test_parse_id_wants_exactly_16_hex_digits() -> None:
    assert parse_id("de49ca932ceadb56") == 0xDE49CA932CEADB56
    assert parse_id("DE49CA932CEADB56") == 0xDE49CA932CEADB56
    for bad in (
        "",
        "de49ca932ceadb5",
        "de49ca932ceadb567",
        "de49ca932ceadb5g",
        " e49ca932ceadb56",
        "+e49ca932ceadb56",
    ):
        assert parse_id(bad) is None


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_id_round_trip(value: int) -> None:
    assert parse_id(format_id(value)) == value


def test_endpoints_as_link_connect_writes_them() -> None:
    v4 = InetAddress(ipaddress.ip_address("127.0.0.1"), 39760)
    v6 = InetAddress(ipaddress.ip_address("2001:db8::1"), 25)
    mapped = InetAddress(ipaddress.ip_address("::ffff:192.0.2.1"), 25)
    local = UnixAddress("/var/run/smtpd.sock")
    assert format_endpoint(v4) == "127.0.0.1:39760"
    assert format_endpoint(v6) == "[2001:db8::1]:25"
    assert format_endpoint(mapped) == "[::ffff:192.0.2.1]:25"  # inet_ntop's form
    assert format_endpoint(local) == "unix:/var/run/smtpd.sock"
    assert format_source(v4) == "127.0.0.1"
    assert format_source(v6) == "[2001:db8::1]"
    assert format_source(local) == "local"


def test_port_out_of_range() -> None:
    with pytest.raises(ValueError):
        InetAddress(ipaddress.ip_address("127.0.0.1"), 65536)


def test_field_keeps_pipes_only_in_the_last_field() -> None:
    assert field("a|b\r\nc\0d", last=True) == "a|b  c d"
    assert field("a|b\r\nc\0d", last=False) == "a b  c d"
    assert field("plain", last=False) == "plain"


@given(st.text(), st.booleans())
def test_field_never_holds_a_line_break(value: str, last: bool) -> None:
    cleaned = field(value, last=last)
    assert len(cleaned) == len(value)
    assert not {"\r", "\n", "\0"} & set(cleaned)
    assert last or "|" not in cleaned


def test_report_events_are_opensmtpds() -> None:
    assert [event.value for event in ReportEvent] == [
        "link-connect",
        "link-disconnect",
        "link-greeting",
        "link-identify",
        "link-tls",
        "link-auth",
        "tx-reset",
        "tx-begin",
        "tx-mail",
        "tx-rcpt",
        "tx-envelope",
        "tx-data",
        "tx-commit",
        "tx-rollback",
        "protocol-client",
        "protocol-server",
        "filter-report",
        "filter-response",
        "timeout",
    ]
    assert ReportEvent.FILTER_RESPONSE not in SMTP_OUT_EVENTS
    assert ReportEvent.FILTER_REPORT not in SMTP_OUT_EVENTS
    assert len(SMTP_OUT_EVENTS) == 17


def test_filter_phases_are_opensmtpds() -> None:
    assert [phase.value for phase in FilterPhase] == [
        "connect",
        "helo",
        "ehlo",
        "starttls",
        "auth",
        "mail-from",
        "rcpt-to",
        "data",
        "data-line",
        "rset",
        "quit",
        "noop",
        "help",
        "wiz",
        "commit",
    ]


def test_filter_response_phase_names() -> None:
    # lka_report_smtp_filter_response: connect is "connected", starttls "tls"
    assert FilterPhase.CONNECT.response_name == "connected"
    assert FilterPhase.STARTTLS.response_name == "tls"
    assert FilterPhase.MAIL_FROM.response_name == "mail-from"


def test_decisions_with_parameters() -> None:
    assert {d for d in Decision if d.takes_parameter} == {
        Decision.REJECT,
        Decision.DISCONNECT,
        Decision.REWRITE,
        Decision.REPORT,
    }
