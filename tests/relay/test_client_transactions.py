"""Tests for mta.relay.client, the transaction part: MAIL / RCPT / DATA with and
without PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN parameters, per-recipient
results, the recipient limit, LMTP, and several messages on one session."""

from __future__ import annotations

from mta.delivery.result import Outcome, Result
from mta.envelope import DsnNotify, DsnRet
from mta.relay.client import Client, ClientConfig, TlsPolicy
from mta.relay.events import (
    Close,
    RecipientResult,
    Send,
    SendContent,
    SessionFailed,
    TransactionDone,
)
from mta.relay.timeouts import Step
from mta.relay.transaction import Recipient, Transaction
from mta.status import StatusCode
from tests.relay.clientkit import (
    EHLO_BASIC,
    EHLO_PIPELINING,
    GREETING,
    OK,
    failure,
    message,
    outcomes,
    ready,
    sent,
    step,
)

OK_T = Outcome.OK
TEMP = Outcome.TEMPFAIL
PERM = Outcome.PERMFAIL
GO = b"354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED = b"250 2.0.0 Ok: queued\r\n"
BOB_CAROL = message("bob@example.net", "carol@example.net")


def deliver(client: Client, content: bytes = b"Subject: x\r\n\r\nhi\r\n") -> bytes:
    """After SendContent: the content's bytes and the final dot."""
    return sent(client.content(content)) + sent(client.end_content())


# -- happy paths ----------------------------------------------------------


def test_pipelined_transaction_in_one_write() -> None:
    c, events = ready([BOB_CAROL], EHLO_PIPELINING)
    assert events == [
        Send(
            b"MAIL FROM:<alice@example.org>\r\n"
            b"RCPT TO:<bob@example.net>\r\n"
            b"RCPT TO:<carol@example.net>\r\n"
            b"DATA\r\n"
        )
    ]
    assert step(c) is Step.MAIL
    assert c.receive_data(OK) == []
    assert step(c) is Step.RCPT
    assert c.receive_data(OK + OK) == []
    assert step(c) is Step.DATA_INIT
    assert c.receive_data(GO) == [SendContent(0)]
    assert deliver(c) == b"Subject: x\r\n\r\nhi\r\n.\r\n"
    assert c.receive_data(QUEUED) == [
        RecipientResult(0, 0, Result.ok("250 2.0.0 Ok: queued")),
        RecipientResult(0, 1, Result.ok("250 2.0.0 Ok: queued")),
        TransactionDone(0),
        Send(b"QUIT\r\n"),
    ]


def test_pipelined_replies_in_one_segment() -> None:
    c, _ = ready([BOB_CAROL], EHLO_PIPELINING)
    assert c.receive_data(OK + OK + OK + GO) == [SendContent(0)]


def test_unpipelined_one_command_per_reply() -> None:
    c, events = ready([BOB_CAROL])
    assert sent(events) == b"MAIL FROM:<alice@example.org>\r\n"
    assert c.receive_data(OK) == [Send(b"RCPT TO:<bob@example.net>\r\n")]
    assert c.receive_data(OK) == [Send(b"RCPT TO:<carol@example.net>\r\n")]
    assert c.receive_data(OK) == [Send(b"DATA\r\n")]


# -- per-recipient results ------------------------------------------------


def test_per_recipient_4xx_and_5xx() -> None:
    c, _ = ready([message("a@x.net", "b@x.net", "c@x.net")], EHLO_PIPELINING)
    events = c.receive_data(
        OK + b"550 5.1.1 <a@x.net>: no such user\r\n" + b"451 4.3.0 later\r\n" + OK + GO
    )
    assert outcomes(events) == [
        (0, 0, PERM, "5.1.1", "550 5.1.1 <a@x.net>: no such user"),
        (0, 1, TEMP, "4.3.0", "451 4.3.0 later"),
    ]
    assert events[-1] == SendContent(0)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert outcomes(events) == [(0, 2, OK_T, "2.0.0", "250 2.0.0 Ok: queued")]
    assert TransactionDone(0) in events


def test_reply_without_enhanced_code() -> None:
    c, _ = ready([message()])
    c.receive_data(OK)
    events = c.receive_data(b"550 unknown user\r\n")
    assert outcomes(events) == [(0, 0, PERM, "5.0.0", "550 unknown user")]


def test_multiline_reply_text_kept_and_bounded() -> None:
    c, _ = ready([message()])
    c.receive_data(OK)
    events = c.receive_data(
        b"550-5.7.1 Rejected\r\n550-5.7.1 see\r\n550 5.7.1 " + b"x" * 900 + b"\r\n"
    )
    ((_, _, outcome, status, text),) = outcomes(events)
    assert (outcome, status) == (PERM, "5.7.1")
    assert text.startswith("550 5.7.1 Rejected see x") and text.endswith("...")
    assert len(text) == 403


def test_data_refused_settles_the_accepted_and_resets() -> None:
    c, _ = ready([BOB_CAROL, message()])
    c.receive_data(OK)
    c.receive_data(OK)
    c.receive_data(b"550 5.1.1 no carol\r\n")
    events = c.receive_data(b"554 5.7.1 spam\r\n")
    assert outcomes(events) == [(0, 0, PERM, "5.7.1", "554 5.7.1 spam")]
    assert events[-1] == Send(b"RSET\r\n")
    assert step(c) is Step.RSET
    assert c.receive_data(OK) == [Send(b"MAIL FROM:<alice@example.org>\r\n")]


def test_all_recipients_refused_no_data_then_rset() -> None:
    c, _ = ready([BOB_CAROL])
    c.receive_data(OK)
    c.receive_data(b"550 5.1.1 no bob\r\n")
    events = c.receive_data(b"550 5.1.1 no carol\r\n")
    assert [e for e in events if not isinstance(e, RecipientResult)] == [
        TransactionDone(0),
        Send(b"RSET\r\n"),
    ]
    assert c.receive_data(OK) == [Send(b"QUIT\r\n")]


def test_all_recipients_refused_pipelined() -> None:
    c, _ = ready([BOB_CAROL], EHLO_PIPELINING)
    events = c.receive_data(
        OK + b"550 5.1.1 no\r\n" + b"550 5.1.1 no\r\n" + b"554 5.5.1 no valid recipients\r\n"
    )
    assert [o[:3] for o in outcomes(events)] == [(0, 0, PERM), (0, 1, PERM)]
    assert events[-1] == Send(b"RSET\r\n")


def test_all_recipients_refused_pipelined_but_354_anyway() -> None:
    c, _ = ready([BOB_CAROL], EHLO_PIPELINING)
    events = c.receive_data(OK + b"550 5.1.1 no\r\n" + b"550 5.1.1 no\r\n" + GO)
    assert events[-1] == Send(b".\r\n")  # an empty message ends the DATA, nothing is delivered
    assert step(c) is Step.DATA_TERM
    assert c.receive_data(b"554 5.5.1 no valid recipients\r\n") == [Send(b"RSET\r\n")]


def test_mail_refused_pipelined_but_354_anyway() -> None:
    c, _ = ready([message()], EHLO_PIPELINING)
    events = c.receive_data(b"550 5.7.1 no\r\n" + OK + GO)
    assert outcomes(events) == [(0, 0, PERM, "5.7.1", "550 5.7.1 no")]
    assert events[-1] == Send(b".\r\n")
    assert c.receive_data(OK) == [Send(b"RSET\r\n")]
    assert c.receive_data(OK) == [Send(b"QUIT\r\n")]


def test_mail_refused_then_next_message_without_rset() -> None:
    c, _ = ready([BOB_CAROL, message(sender="dave@example.org")])
    events = c.receive_data(b"553 5.1.8 bad sender\r\n")
    assert outcomes(events) == [
        (0, 0, PERM, "5.1.8", "553 5.1.8 bad sender"),
        (0, 1, PERM, "5.1.8", "553 5.1.8 bad sender"),
    ]
    assert events[-1] == Send(b"MAIL FROM:<dave@example.org>\r\n")


def test_mail_refused_pipelined_consumes_the_other_replies() -> None:
    c, _ = ready([BOB_CAROL, message()], EHLO_PIPELINING)
    events = c.receive_data(b"451 4.3.0 later\r\n")
    assert [o[:3] for o in outcomes(events)] == [(0, 0, TEMP), (0, 1, TEMP)]
    assert c.receive_data(b"503 5.5.1 MAIL first\r\n503 5.5.1 MAIL first\r\n") == []
    events = c.receive_data(b"503 5.5.1 MAIL first\r\n")
    assert events == [
        Send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
    ]


# -- recipient limit ------------------------------------------------------


def test_452_puts_the_rest_in_a_further_transaction() -> None:
    c, _ = ready([message("a@x.net", "b@x.net", "c@x.net")])
    c.receive_data(OK)
    assert c.receive_data(OK) == [Send(b"RCPT TO:<b@x.net>\r\n")]
    events = c.receive_data(b"452 4.5.3 Too many recipients\r\n")
    assert events == [Send(b"DATA\r\n")]  # c@x.net is not even tried
    c.receive_data(GO)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert outcomes(events) == [(0, 0, OK_T, "2.0.0", "250 2.0.0 Ok: queued")]
    assert events[-1] == Send(b"MAIL FROM:<alice@example.org>\r\n")
    assert c.receive_data(OK) == [Send(b"RCPT TO:<b@x.net>\r\n")]
    assert c.receive_data(OK) == [Send(b"RCPT TO:<c@x.net>\r\n")]
    assert c.receive_data(OK) == [Send(b"DATA\r\n")]
    c.receive_data(GO)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert [o[:3] for o in outcomes(events)] == [(0, 1, OK_T), (0, 2, OK_T)]
    assert events[-2:] == [TransactionDone(0), Send(b"QUIT\r\n")]


def test_452_pipelined() -> None:
    c, _ = ready([message("a@x.net", "b@x.net", "c@x.net")], EHLO_PIPELINING)
    too_many = b"452 4.5.3 Too many recipients\r\n"
    assert c.receive_data(OK + OK + too_many + too_many + GO) == [SendContent(0)]
    deliver(c)
    events = c.receive_data(QUEUED)
    assert events[-1] == Send(
        b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\nDATA\r\n"
    )


def test_552_too_many_recipients_is_temporary() -> None:
    c, _ = ready([message("a@x.net", "b@x.net")])
    c.receive_data(OK + OK)
    assert c.receive_data(b"552 5.5.3 Too many recipients\r\n") == [Send(b"DATA\r\n")]


def test_452_for_the_first_recipient_does_not_loop() -> None:
    c, _ = ready([message("a@x.net", "b@x.net")])
    c.receive_data(OK)
    events = c.receive_data(b"452 4.5.3 Too many recipients\r\n")
    assert outcomes(events) == [
        (0, 0, TEMP, "4.5.3", "452 4.5.3 Too many recipients"),
        (0, 1, TEMP, "4.5.3", "452 4.5.3 Too many recipients"),
    ]
    assert events[-1] == Send(b"RSET\r\n")


def test_452_for_lack_of_storage_is_a_plain_tempfail() -> None:
    c, _ = ready([message("a@x.net", "b@x.net")])
    c.receive_data(OK)
    events = c.receive_data(b"452 4.3.1 Insufficient system storage\r\n")
    assert outcomes(events) == [(0, 0, TEMP, "4.3.1", "452 4.3.1 Insufficient system storage")]
    assert events[-1] == Send(b"RCPT TO:<b@x.net>\r\n")


def test_rcpt_max_splits_transactions() -> None:
    c, events = ready([message("a@x.net", "b@x.net", "c@x.net")], EHLO_PIPELINING, rcpt_max=2)
    assert sent(events).count(b"RCPT") == 2
    c.receive_data(OK + OK + OK + GO)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert TransactionDone(0) not in events
    assert sent(events) == b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<c@x.net>\r\nDATA\r\n"


# -- SIZE, 8BITMIME, SMTPUTF8 ----------------------------------------------


def test_size_parameter_when_offered() -> None:
    _, events = ready([message(size=1234)], b"250-mx\r\n250 SIZE 10000\r\n")
    assert sent(events) == b"MAIL FROM:<alice@example.org> SIZE=1234\r\n"
    _, events = ready([message(size=1234)], b"250-mx\r\n250 SIZE\r\n")
    assert sent(events) == b"MAIL FROM:<alice@example.org> SIZE=1234\r\n"
    _, events = ready([message(size=1234)], b"250 mx\r\n")
    assert sent(events) == b"MAIL FROM:<alice@example.org>\r\n"


def test_too_big_is_a_permanent_failure_before_mail() -> None:
    tx = message("bob@example.net", "carol@example.net", size=10001)
    _, events = ready([tx], b"250-mx\r\n250 SIZE 10000\r\n")
    text = "Message is too large for remote host (10001 > 10000 octets)"
    assert events == [
        RecipientResult(0, 0, Result.permfail(text, StatusCode(5, 3, 4))),
        RecipientResult(0, 1, Result.permfail(text, StatusCode(5, 3, 4))),
        TransactionDone(0),
        Send(b"QUIT\r\n"),
    ]
    assert outcomes(events)[0][3] == "5.3.4"


def test_8bit_with_8bitmime() -> None:
    _, events = ready([message(eight_bit=True)], EHLO_BASIC)
    assert sent(events) == b"MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n"


def test_8bit_without_8bitmime_bounces_with_5_6_3() -> None:
    _, events = ready([message(eight_bit=True), message()], b"250 mx\r\n")
    assert outcomes(events) == [(0, 0, PERM, "5.6.3", "Remote host does not support 8BITMIME")]
    assert events[-1] == Send(b"MAIL FROM:<alice@example.org>\r\n")


def test_undeclared_8bit_content_never_reaches_a_7bit_server() -> None:
    c, _ = ready([BOB_CAROL, message()], b"250 mx\r\n")
    c.receive_data(OK + OK)
    assert c.receive_data(b"550 5.1.1 no carol\r\n")[-1] == Send(b"DATA\r\n")
    assert c.receive_data(GO) == [SendContent(0)]
    assert c.content(b"Subject: plain\r\n\r\n") == [Send(b"Subject: plain\r\n\r\n")]
    events = c.content(b"caf\xc3\xa9\r\n")
    assert events == [
        RecipientResult(
            0,
            0,
            Result.permfail(
                "Remote host does not support 8BITMIME and the message has 8-bit content",
                StatusCode(5, 6, 3),
            ),
        ),
        TransactionDone(0),
        SessionFailed(Result.tempfail("Connection dropped during DATA (8-bit content)"), ((1, 0),)),
        Close(),
    ]
    assert c.end_content() == []


def test_8bit_content_is_fine_for_an_8bitmime_server() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK + GO)
    assert c.content(b"caf\xc3\xa9\r\n") == [Send(b"caf\xc3\xa9\r\n")]


def test_smtputf8_offered() -> None:
    _, events = ready(
        [message("j\u00f6rg@b\u00fccher.example")], b"250-mx\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
    )
    assert sent(events) == b"MAIL FROM:<alice@example.org> SMTPUTF8\r\n"


def test_smtputf8_missing_bounces_with_5_6_7() -> None:
    for tx in (message(smtputf8=True), message("j\u00f6rg@example.net")):
        _, events = ready([tx])
        assert outcomes(events) == [(0, 0, PERM, "5.6.7", "Remote host does not support SMTPUTF8")]
        assert sent(events) == b"QUIT\r\n"


def test_unsendable_addresses_are_refused_for_good() -> None:
    c, events = ready([message("bob@example.net\r\nDATA", "carol@example.net")])
    assert outcomes(events) == [(0, 0, PERM, "5.1.3", "Invalid recipient address")]
    assert c.receive_data(OK) == [Send(b"RCPT TO:<carol@example.net>\r\n")]
    _, events = ready([message(sender="a@b\r\nRSET")])
    assert outcomes(events) == [(0, 0, PERM, "5.1.7", "Invalid sender address")]


# -- DSN ------------------------------------------------------------------

DSN_TX = Transaction(
    "alice@example.org",
    (
        Recipient("bob@example.net", DsnNotify.SUCCESS | DsnNotify.FAILURE, "rfc822;bob+x=y@a.org"),
        Recipient("carol@example.net", DsnNotify.NEVER),
        Recipient("dave@example.net"),
    ),
    ret=DsnRet.HDRS,
    envid="QQ314159+=",
)


def test_dsn_parameters_forwarded_when_offered() -> None:
    c, events = ready([DSN_TX], b"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n")
    assert sent(events) == (
        b"MAIL FROM:<alice@example.org> RET=HDRS ENVID=QQ314159+2B+3D\r\n"
        b"RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx+3Dy@a.org\r\n"
        b"RCPT TO:<carol@example.net> NOTIFY=NEVER\r\n"
        b"RCPT TO:<dave@example.net>\r\n"
        b"DATA\r\n"
    )
    c.receive_data(OK * 4 + GO)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert [e.relayed_dsn for e in events if isinstance(e, RecipientResult)] == [False] * 3


def test_no_dsn_parameters_without_dsn_and_relayed_flag() -> None:
    c, events = ready([DSN_TX], EHLO_PIPELINING)
    assert sent(events) == (
        b"MAIL FROM:<alice@example.org>\r\n"
        b"RCPT TO:<bob@example.net>\r\n"
        b"RCPT TO:<carol@example.net>\r\n"
        b"RCPT TO:<dave@example.net>\r\n"
        b"DATA\r\n"
    )
    c.receive_data(OK * 4 + GO)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert [(e.recipient, e.relayed_dsn) for e in events if isinstance(e, RecipientResult)] == [
        (0, True),
        (1, False),
        (2, False),
    ]


# -- several messages, LMTP ------------------------------------------------


def test_several_transactions_on_one_session() -> None:
    c, events = ready([message("a@x.net"), message("b@x.net", sender="z@example.org")])
    assert sent(events) == b"MAIL FROM:<alice@example.org>\r\n"
    c.receive_data(OK + OK)
    c.receive_data(GO)
    assert deliver(c, b"first") == b"first\r\n.\r\n"
    events = c.receive_data(QUEUED)
    assert events[-2:] == [TransactionDone(0), Send(b"MAIL FROM:<z@example.org>\r\n")]
    c.receive_data(OK + OK)
    assert c.receive_data(GO) == [SendContent(1)]
    assert deliver(c, b"second\r\n") == b"second\r\n.\r\n"
    events = c.receive_data(b"451 4.3.0 try later\r\n")
    assert outcomes(events) == [(1, 0, TEMP, "4.3.0", "451 4.3.0 try later")]
    assert events[-2:] == [TransactionDone(1), Send(b"QUIT\r\n")]
    assert c.receive_data(b"221 bye\r\n") == [Close()]


def test_lmtp_one_reply_per_accepted_recipient() -> None:
    c = ready(
        [message("a@x.net", "b@x.net", "c@x.net", "d@x.net")],
        b"250-lmtp\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        lmtp=True,
    )[0]
    assert c.receive_data(OK + OK + b"550 5.1.1 no b\r\n" + OK + OK + GO) == [
        RecipientResult(0, 1, Result.permfail("550 5.1.1 no b", StatusCode(5, 1, 1))),
        SendContent(0),
    ]
    deliver(c)
    assert step(c) is Step.DATA_TERM
    events = c.receive_data(b"250 2.0.0 <a@x.net> delivered\r\n")
    assert outcomes(events) == [(0, 0, OK_T, "2.0.0", "250 2.0.0 <a@x.net> delivered")]
    assert step(c) is Step.DATA_TERM
    events = c.receive_data(b"452 4.2.2 <c@x.net> over quota\r\n550 5.2.1 <d@x.net> disabled\r\n")
    assert outcomes(events) == [
        (0, 2, TEMP, "4.2.2", "452 4.2.2 <c@x.net> over quota"),
        (0, 3, PERM, "5.2.1", "550 5.2.1 <d@x.net> disabled"),
    ]
    assert events[-2:] == [TransactionDone(0), Send(b"QUIT\r\n")]


def test_lmtp_connection_lost_between_final_replies() -> None:
    c = ready([message("a@x.net", "b@x.net")], b"250 lmtp\r\n", lmtp=True)[0]
    c.receive_data(OK + OK + OK + GO)
    deliver(c)
    events = c.receive_data(OK)
    assert outcomes(events) == [(0, 0, OK_T, "2.0.0", "250 2.0.0 Ok")]
    assert c.receive_eof() == [
        SessionFailed(Result.tempfail("Connection closed by remote host during DATA"), ((0, 1),)),
        Close(),
    ]


def test_lmtp_sends_lhlo() -> None:
    c = Client(ClientConfig("relay.example.org", tls=TlsPolicy.NONE, lmtp=True), [message()])
    assert c.receive_data(GREETING) == [Send(b"LHLO relay.example.org\r\n")]


def test_session_failure_keeps_the_settled_results() -> None:
    c, _ = ready([message("a@x.net", "b@x.net"), message()])
    c.receive_data(OK)
    c.receive_data(b"550 5.1.1 no a\r\n")
    events = c.receive_data(b"421 4.3.2 shutting down\r\n")
    assert failure(events) == (
        Result.tempfail("421 4.3.2 shutting down", StatusCode(4, 3, 2)),
        ((0, 1), (1, 0)),
    )


# -- max-failures-per-session ---------------------------------------------

NO_USER = b"550 5.1.1 no such user\r\n"
TOO_MANY = "Too many consecutive errors, closing connection"


def test_consecutive_refusals_stop_the_recipients_not_yet_sent() -> None:
    tx = message("a@x.net", "b@x.net", "c@x.net", "d@x.net")
    c, _ = ready([tx, message("e@x.net")], max_failures=2)
    c.receive_data(OK)  # MAIL
    c.receive_data(OK)  # a accepted
    assert sent(c.receive_data(NO_USER)) == b"RCPT TO:<c@x.net>\r\n"  # one failure: go on
    events = c.receive_data(NO_USER)  # two in a row: d is not sent
    assert outcomes(events) == [
        (0, 2, PERM, "5.1.1", "550 5.1.1 no such user"),
        (0, 3, TEMP, "4.3.0", TOO_MANY),
    ]
    assert sent(events) == b"DATA\r\n"  # the accepted one still gets the message
    c.receive_data(GO)
    deliver(c)
    events = c.receive_data(QUEUED)
    assert outcomes(events) == [(0, 0, OK_T, "2.0.0", "250 2.0.0 Ok: queued")]
    result, unsettled = failure(events)  # then the session ends: e fails temporarily
    assert (result.text, unsettled) == (TOO_MANY, ((1, 0),))
    assert sent(events) == b"QUIT\r\n"


def test_an_acceptance_resets_the_count() -> None:
    c, _ = ready([message("a@x.net", "b@x.net", "c@x.net", "d@x.net")], max_failures=2)
    c.receive_data(OK)
    c.receive_data(NO_USER)
    c.receive_data(OK)
    c.receive_data(NO_USER)
    assert sent(c.receive_data(OK)) == b"DATA\r\n"


def test_pipelined_refusals_end_the_session_after_the_transaction() -> None:
    c, _ = ready(
        [message("a@x.net", "b@x.net"), message("c@x.net")], EHLO_PIPELINING, max_failures=2
    )
    events = c.receive_data(OK + NO_USER + NO_USER + b"554 5.5.1 no valid recipients\r\n")
    assert [o[:3] for o in outcomes(events)] == [(0, 0, PERM), (0, 1, PERM)]
    result, unsettled = failure(events)
    assert (result.text, unsettled) == (TOO_MANY, ((1, 0),))
    assert b"MAIL" not in sent(events)  # no further transaction
    assert sent(events).endswith(b"QUIT\r\n")


def test_no_limit() -> None:
    recipients = [f"u{i}@x.net" for i in range(30)]
    c, _ = ready([message(*recipients), message("z@x.net")], EHLO_PIPELINING, max_failures=0)
    events = c.receive_data(OK + NO_USER * 30 + b"554 5.5.1 no valid recipients\r\n")
    assert len(outcomes(events)) == 30
    assert sent(events).startswith(b"RSET\r\n")  # and the next transaction follows
