"""Parsing a filter's output: every message type, every error, any chunking, the
line bound."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.errors import FilterError, FilterProtocolError
from mta.filters.messages import (
    FilterDataLine,
    FilterMessage,
    FilterReport,
    FilterResult,
    RegisterFilter,
    RegisterReady,
    RegisterReport,
)
from mta.filters.parse import FilterOutputParser, parse_line
from mta.filters.protocol import (
    MAX_LINE,
    Decision,
    FilterPhase,
    ReportEvent,
    Subsystem,
    Timestamp,
)

S = 0xDE49CA932CEADB56
T = 0x146E95AE5A1F2BC0
ST = b"de49ca932ceadb56|146e95ae5a1f2bc0"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"register|ready", RegisterReady()),
        (b"register|report|smtp-in|*", RegisterReport(Subsystem.SMTP_IN, None)),
        (b"register|report|smtp-out|*", RegisterReport(Subsystem.SMTP_OUT, None)),
        (
            b"register|report|smtp-in|link-auth",
            RegisterReport(Subsystem.SMTP_IN, ReportEvent.LINK_AUTH),
        ),
        (
            b"register|report|smtp-out|tx-commit",
            RegisterReport(Subsystem.SMTP_OUT, ReportEvent.TX_COMMIT),
        ),
        (b"register|filter|smtp-in|data-line", RegisterFilter(FilterPhase.DATA_LINE)),
        (b"register|filter|SMTP-IN|commit", RegisterFilter(FilterPhase.COMMIT)),  # strncasecmp
        (b"filter-result|" + ST + b"|proceed", FilterResult(S, T, Decision.PROCEED)),
        (b"filter-result|" + ST + b"|junk", FilterResult(S, T, Decision.JUNK)),
        (
            b"filter-result|" + ST + b"|reject|550 5.7.1 no|pipes|here",
            FilterResult(S, T, Decision.REJECT, "550 5.7.1 no|pipes|here"),
        ),
        (b"filter-result|" + ST + b"|reject|", FilterResult(S, T, Decision.REJECT, "")),
        (
            b"filter-result|" + ST + b"|disconnect|421 bye",
            FilterResult(S, T, Decision.DISCONNECT, "421 bye"),
        ),
        (b"filter-result|" + ST + b"|rewrite|<b@c>", FilterResult(S, T, Decision.REWRITE, "<b@c>")),
        (
            b"filter-result|" + ST + b"|report|score=5",
            FilterResult(S, T, Decision.REPORT, "score=5"),
        ),
        (
            b"filter-result|DE49CA932CEADB56|146E95AE5A1F2BC0|proceed",
            FilterResult(S, T, Decision.PROCEED),
        ),
        (b"filter-dataline|" + ST + b"|body|with|pipes", FilterDataLine(S, T, b"body|with|pipes")),
        (b"filter-dataline|" + ST + b"|", FilterDataLine(S, T, b"")),
        (b"filter-dataline|" + ST + b"|.", FilterDataLine(S, T, b".")),
        (
            b"filter-dataline|" + ST + b"|caf\xe9",
            FilterDataLine(S, T, b"caf\xe9"),
        ),  # not UTF-8: kept
        (
            b"report|1796663008.663741|smtp-in|de49ca932ceadb56|score|7",
            FilterReport(Timestamp(1796663008, 663741), Subsystem.SMTP_IN, S, "score|7"),
        ),
    ],
)
def test_parse_each_message(line: bytes, message: FilterMessage) -> None:
    assert parse_line(line) == message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "unknown filter message type"),
        (b"config|ready", "unknown filter message type"),
        (b"filter|0.7|1.000000|smtp-in|connect", "unknown filter message type"),
        (b"register", "invalid register line"),
        (b"register|", "invalid register line"),
        (b"register|ready|now", "invalid register line"),
        (b"register|report|smtp-in", "invalid register line"),
        (b"register|unknown|smtp-in|x", "invalid register line"),
        (b"register|report|smtp-sideways|*", "unknown subsystem"),
        (b"register|report|SMTP-IN|*", "unknown subsystem"),  # strncmp there
        (b"register|report|smtp-in|link-up", "unknown report event"),
        (b"register|report|smtp-in|link-connect|x", "unknown report event"),
        (b"register|filter|smtp-out|connect", "filters exist only for smtp-in"),
        (b"register|filter|smtp-in|*", "unknown filter phase"),
        (b"register|filter|smtp-in|bdat", "unknown filter phase"),
        (b"filter-result|" + ST, "filter-result needs a session, a token and a decision"),
        (
            b"filter-result|de49ca932ceadb56",
            "filter-result needs a session, a token and a decision",
        ),
        (b"filter-result|de49ca932ceadb5|146e95ae5a1f2bc0|proceed", "invalid session id"),
        (b"filter-result|de49ca932ceadb56|146e95ae5a1f2bcx|proceed", "invalid token"),
        (b"filter-result|" + ST + b"|accept", "unknown filter-result decision"),
        (b"filter-result|" + ST + b"|", "unknown filter-result decision"),
        (b"filter-result|" + ST + b"|proceed|now", "unexpected parameter after proceed"),
        (b"filter-result|" + ST + b"|junk|", "unexpected parameter after junk"),
        (b"filter-result|" + ST + b"|reject", "reject needs a parameter"),
        (b"filter-result|" + ST + b"|disconnect", "disconnect needs a parameter"),
        (b"filter-result|" + ST + b"|rewrite", "rewrite needs a parameter"),
        (b"filter-result|" + ST + b"|report", "report needs a parameter"),
        (b"filter-result|" + ST + b"|reject|550 caf\xe9", "filter line is not UTF-8"),
        (b"filter-dataline|" + ST, "filter-dataline needs a session, a token and a line"),
        (b"filter-dataline|0|146e95ae5a1f2bc0|x", "invalid session id"),
        (b"filter-dataline|de49ca932ceadb56||x", "invalid token"),
        (b"report|1796663008.663741|smtp-in|de49ca932ceadb56", "report needs a timestamp"),
        (b"report|1796663008|smtp-in|de49ca932ceadb56|m", "invalid report timestamp"),
        (b"report|1796663008.66374|smtp-in|de49ca932ceadb56|m", "invalid report timestamp"),
        (b"report|0.7|1796663008.663741|smtp-in|de49ca932ceadb56|m", "invalid report timestamp"),
        (
            b"report|1796663008.663741|smtp-out|de49ca932ceadb56|m",
            "filter reports exist only for smtp-in",
        ),
        (b"report|1796663008.663741|smtp-in|xyz|m", "invalid session id"),
    ],
)
def test_parse_errors_say_what_and_which_line(line: bytes, reason: str) -> None:
    with pytest.raises(FilterProtocolError) as caught:
        parse_line(line)
    assert caught.value.reason.startswith(reason)
    assert caught.value.line == line
    assert isinstance(caught.value, FilterError)


def test_error_quotes_the_line_safely() -> None:
    with pytest.raises(FilterProtocolError) as caught:
        parse_line(b"bogus|\x1b[31m\x07" + b"x" * 1000)
    text = str(caught.value)
    assert text.startswith('unknown filter message type: "bogus|\\033[31m\\007xxx')
    assert text.endswith('..."')
    assert all(char.isprintable() for char in text)


def drain(parser: FilterOutputParser) -> list[FilterMessage]:
    out = []
    while (message := parser.next_message()) is not None:
        out.append(message)
    return out


SESSION = (
    b"register|report|smtp-in|*\n"
    b"register|filter|smtp-in|data-line\n"
    b"register|ready\n"
    b"filter-result|" + ST + b"|reject|550 no|really\n"
    b"filter-dataline|" + ST + b"|Subject: x\r\n"
    b"filter-dataline|" + ST + b"|.\n"
    b"report|1796663008.663741|smtp-in|de49ca932ceadb56|hello\n"
)
EXPECTED = [
    RegisterReport(Subsystem.SMTP_IN, None),
    RegisterFilter(FilterPhase.DATA_LINE),
    RegisterReady(),
    FilterResult(S, T, Decision.REJECT, "550 no|really"),
    FilterDataLine(S, T, b"Subject: x"),  # the CR before LF is dropped
    FilterDataLine(S, T, b"."),
    FilterReport(Timestamp(1796663008, 663741), Subsystem.SMTP_IN, S, "hello"),
]


def test_parser_whole() -> None:
    parser = FilterOutputParser()
    parser.feed(SESSION)
    assert drain(parser) == EXPECTED
    parser.close()


@given(st.lists(st.integers(min_value=0, max_value=len(SESSION)), max_size=30))
def test_parser_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SESSION)]
    parser = FilterOutputParser()
    messages: list[FilterMessage] = []
    for start, end in itertools.pairwise(bounds):
        parser.feed(SESSION[start:end])
        messages += drain(parser)
    assert messages == EXPECTED
    parser.close()


@given(st.lists(st.integers(min_value=0, max_value=len(SESSION)), max_size=30))
def test_parser_feeds_without_draining_in_between(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SESSION)]
    parser = FilterOutputParser()
    for start, end in itertools.pairwise(bounds):
        parser.feed(SESSION[start:end])
    assert drain(parser) == EXPECTED


def test_parser_byte_by_byte() -> None:
    parser = FilterOutputParser()
    messages = []
    for byte in SESSION:
        parser.feed(bytes([byte]))
        messages += drain(parser)
    assert messages == EXPECTED


def test_messages_before_a_bad_line_come_out_first_then_the_error_stays() -> None:
    parser = FilterOutputParser()
    parser.feed(b"register|ready\nnonsense\nregister|ready\n")
    assert parser.next_message() == RegisterReady()
    with pytest.raises(FilterProtocolError, match="unknown filter message type"):
        parser.next_message()
    parser.feed(b"register|ready\n")
    with pytest.raises(FilterProtocolError, match="unknown filter message type"):
        parser.next_message()
    with pytest.raises(FilterProtocolError, match="unknown filter message type"):
        parser.close()


def test_a_line_of_max_length_passes_one_byte_more_fails() -> None:
    head = b"filter-dataline|" + ST + b"|"
    fits = head + b"x" * (MAX_LINE - len(head))
    parser = FilterOutputParser()
    parser.feed(fits + b"\r\n")
    assert parser.next_message() == FilterDataLine(S, T, b"x" * (MAX_LINE - len(head)))
    parser.feed(fits + b"y\n")
    with pytest.raises(FilterProtocolError, match="line too long"):
        parser.next_message()


def test_an_overlong_line_is_refused_before_its_end_and_never_buffered() -> None:
    parser = FilterOutputParser(max_line=100)
    parser.feed(b"register|ready\n" + b"x" * 60)
    parser.feed(b"x" * 60)
    for _ in range(100):
        parser.feed(b"x" * 10_000)
    assert len(parser._buffer) <= 15 + 102  # the complete line and the quotable start
    assert parser.next_message() == RegisterReady()  # what came before is still given
    with pytest.raises(FilterProtocolError, match="line too long") as caught:
        parser.next_message()
    assert caught.value.line == b"x" * 101
    with pytest.raises(FilterProtocolError, match="line too long"):
        parser.close()


def test_an_overlong_complete_line_in_one_chunk() -> None:
    parser = FilterOutputParser(max_line=100)
    parser.feed(b"filter-dataline|" + ST + b"|" + b"x" * 200 + b"\nregister|ready\n")
    with pytest.raises(FilterProtocolError, match="line too long"):
        parser.next_message()


def test_close_in_the_middle_of_a_line() -> None:
    parser = FilterOutputParser()
    parser.feed(b"register|ready\nregister|rea")
    with pytest.raises(FilterProtocolError, match="output ends in the middle of a line") as caught:
        parser.close()
    assert caught.value.line == b"register|rea"
    with pytest.raises(FilterProtocolError, match="output ends in the middle of a line"):
        parser.next_message()  # a failed parser stays failed


def test_close_keeps_complete_lines_available() -> None:
    parser = FilterOutputParser()
    parser.feed(b"register|ready\n")
    parser.close()
    assert parser.next_message() == RegisterReady()
    assert parser.next_message() is None
