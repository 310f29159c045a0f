"""A filter's reject / disconnect text made an SMTP reply the way smtpd checks it
(util.c valid_smtp_response, smtp_session.c IMSG_FILTER_SMTP_PROTOCOL), and the
decisions smtpd refuses for a phase."""

from __future__ import annotations

import pytest

from mta.errors import FilterProtocolError
from mta.filters.messages import FilterResult
from mta.filters.protocol import Decision, FilterPhase
from mta.filters.verdict import (
    INTERNAL_ERROR,
    FilterReplyError,
    check_decision,
    decision_reply,
    parse_reply,
)
from mta.reply import Reply


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("550 nope", Reply.of(550, "5.0.0", "nope")),
        ("550 5.7.1 rejected by policy", Reply.of(550, "5.7.1", "rejected by policy")),
        ("451 4.7.1 greylisted, retry", Reply.of(451, "4.7.1", "greylisted, retry")),
        ("550 4.7.1 class differs", Reply.of(550, "5.0.0", "4.7.1 class differs")),
        ("554 5.7.1", Reply.of(554, "5.7.1", "")),
        ("550 a|b|c", Reply.of(550, "5.0.0", "a|b|c")),
        ("550  ", Reply.of(550, "5.0.0", " ")),
        ("421 bye", Reply.of(421, "4.0.0", "bye", close=True)),
        ("421 4.7.0 too busy", Reply.of(421, "4.7.0", "too busy", close=True)),
    ],
)
def test_valid_replies(text: str, reply: Reply) -> None:
    assert parse_reply(text) == reply


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid SMTP reply from filter"),
        ("550", "invalid SMTP reply from filter"),
        ("550 ", "invalid SMTP reply from filter"),  # fewer than 5 characters
        ("550-multi line", "invalid SMTP reply from filter"),
        ("55 x", "invalid SMTP reply from filter"),
        ("5500 x", "invalid SMTP reply from filter"),
        ("650 x", "invalid SMTP reply from filter"),
        ("150 x", "invalid SMTP reply from filter"),
        ("5x0 x", "invalid SMTP reply from filter"),
        ("nope", "invalid SMTP reply from filter"),
        ("550 a\rb", "invalid SMTP reply from filter"),
        ("250 ok", "filter reply is not 4xx or 5xx"),
        ("354 go on", "filter reply is not 4xx or 5xx"),
    ],
)
def test_invalid_replies(text: str, reason: str) -> None:
    with pytest.raises(FilterReplyError) as caught:
        parse_reply(text)
    assert caught.value.reason == reason
    assert caught.value.line == text
    assert isinstance(caught.value, FilterProtocolError)


def test_reject_keeps_the_session_unless_421() -> None:
    assert decision_reply(Decision.REJECT, "550 5.7.1 no") == Reply.of(550, "5.7.1", "no")
    assert decision_reply(Decision.REJECT, "451 later") == Reply.of(451, "4.0.0", "later")
    # smtp_session.c: a 421 turns the reject into a disconnect
    assert decision_reply(Decision.REJECT, "421 go away").close


def test_disconnect_closes_whatever_the_code() -> None:
    assert decision_reply(Decision.DISCONNECT, "550 5.7.1 bad reputation") == Reply.of(
        550, "5.7.1", "bad reputation", close=True
    )
    assert decision_reply(Decision.DISCONNECT, "421 bye") == Reply.of(
        421, "4.0.0", "bye", close=True
    )


@pytest.mark.parametrize("decision", [Decision.REJECT, Decision.DISCONNECT])
@pytest.mark.parametrize("text", ["", "250 fine", "no code", "550-x"])
def test_an_invalid_text_is_421_internal_server_error(decision: Decision, text: str) -> None:
    reply = decision_reply(decision, text)
    assert reply == INTERNAL_ERROR
    assert reply.close
    assert reply.encode() == b"421 4.0.0 Internal server error\r\n"


@pytest.mark.parametrize(
    "decision", [Decision.PROCEED, Decision.JUNK, Decision.REWRITE, Decision.REPORT]
)
def test_only_reject_and_disconnect_have_replies(decision: Decision) -> None:
    with pytest.raises(ValueError):
        decision_reply(decision, "550 x")


def test_junk_at_commit_is_refused() -> None:
    check_decision(FilterPhase.DATA, FilterResult(1, 2, Decision.JUNK))
    check_decision(FilterPhase.COMMIT, FilterResult(1, 2, Decision.PROCEED))
    with pytest.raises(FilterProtocolError, match="junk after DATA"):
        check_decision(FilterPhase.COMMIT, FilterResult(1, 2, Decision.JUNK))


def test_no_filter_result_in_the_data_line_phase() -> None:
    with pytest.raises(FilterProtocolError, match="filter-result in the data-line phase"):
        check_decision(FilterPhase.DATA_LINE, FilterResult(1, 2, Decision.PROCEED))


def test_a_result_needs_its_parameter() -> None:
    with pytest.raises(ValueError):
        FilterResult(1, 2, Decision.REJECT)
    with pytest.raises(ValueError):
        FilterResult(1, 2, Decision.PROCEED, "x")
