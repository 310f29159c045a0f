"""Tests for mta.relay.client, connection reuse: a keepalive client goes idle
when it sent everything, takes more transactions, and QUITs when told."""

from __future__ import annotations

import pytest

from mta.delivery.result import Outcome
from mta.relay.client import Client
from mta.relay.events import Close, RecipientResult, Send, SendContent, TransactionDone
from mta.relay.timeouts import Step
from tests.relay.clientkit import EHLO_PIPELINING, OK, failure, message, ready, sent, step

GO = b"354 go ahead\r\n"
QUEUED = b"250 2.0.0 Ok: queued\r\n"
PIPELINED = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<%s>\r\nDATA\r\n"


def idle(client: Client) -> bool:
    """``client.idle``, read afresh (mypy keeps a property's narrowing otherwise)."""
    return client.idle


def test_a_keepalive_client_goes_idle_then_takes_another_message() -> None:
    c, events = ready([message("bob@example.net")], EHLO_PIPELINING, keepalive=True)
    assert sent(events) == PIPELINED % b"bob@example.net"
    assert c.receive_data(OK + OK + GO) == [SendContent(0)]
    c.content(b"hi\r\n")
    c.end_content()
    done = c.receive_data(QUEUED)
    assert [type(e) for e in done] == [RecipientResult, TransactionDone]  # no QUIT
    assert idle(c) and step(c) is None and not c.closed
    events = c.add_transactions([message("carol@example.net")])
    assert sent(events) == PIPELINED % b"carol@example.net"
    assert not idle(c) and step(c) is Step.MAIL
    assert c.receive_data(OK + OK + GO) == [SendContent(1)]
    c.content(b"again\r\n")
    c.end_content()
    done = c.receive_data(QUEUED)
    assert isinstance(done[0], RecipientResult) and (done[0].transaction, done[0].recipient) == (
        1,
        0,
    )
    assert done[1] == TransactionDone(1)
    assert idle(c)
    assert c.finish() == [Send(b"QUIT\r\n")]
    assert step(c) is Step.QUIT
    assert c.receive_data(b"221 bye\r\n") == [Close()]
    assert (c.closed, idle(c)) == (True, False)


def test_a_refused_message_leaves_the_client_idle_after_rset() -> None:
    c, _ = ready([message("bob@example.net")], EHLO_PIPELINING, keepalive=True)
    events = c.receive_data(OK + b"550 5.1.1 no\r\n" + b"554 5.5.1 no valid recipients\r\n")
    assert sent(events) == b"RSET\r\n"
    assert c.receive_data(OK) == [] and idle(c)


def test_the_server_closing_an_idle_session_settles_nobody() -> None:
    c, _ = ready([message("bob@example.net")], EHLO_PIPELINING, keepalive=True)
    c.receive_data(OK + OK + GO)
    c.content(b"hi\r\n")
    c.end_content()
    c.receive_data(QUEUED)
    events = c.receive_eof()
    result, unsettled = failure(events)
    assert unsettled == () and result.outcome is Outcome.TEMPFAIL
    assert c.closed and not idle(c)
    with pytest.raises(RuntimeError):
        c.add_transactions([message()])


def test_more_work_only_when_idle() -> None:
    c, _ = ready([message("bob@example.net")], EHLO_PIPELINING, keepalive=True)
    with pytest.raises(RuntimeError):
        c.add_transactions([message()])
    with pytest.raises(RuntimeError):
        c.finish()
    plain, _ = ready([message("bob@example.net")], EHLO_PIPELINING)
    plain.receive_data(OK + OK + GO)
    plain.content(b"hi\r\n")
    assert sent(plain.end_content()) == b".\r\n"
    assert sent(plain.receive_data(QUEUED)) == b"QUIT\r\n"  # no keepalive: QUIT
    assert not idle(plain)
