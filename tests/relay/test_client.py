"""Tests for mta.relay.client, the session part: greeting, EHLO / HELO, STARTTLS,
AUTH, steps (timeouts), and how the session fails (421, malformed replies,
the connection closing, the driver giving up)."""

from __future__ import annotations

import base64

import pytest

from mta.delivery.result import Outcome, Result
from mta.relay.client import Client, ClientConfig, Credentials, TlsPolicy
from mta.relay.events import (
    Close,
    Event,
    RecipientResult,
    Send,
    SendContent,
    SessionFailed,
    StartTls,
    TransactionDone,
)
from mta.relay.timeouts import Step
from mta.relay.transaction import Transaction
from mta.status import StatusCode
from tests.relay.clientkit import (
    EHLO_BASIC,
    GREETING,
    HELO,
    OK,
    failure,
    message,
    ready,
    sent,
    step,
)

EHLO = b"EHLO relay.example.org\r\n"
MAIL = b"MAIL FROM:<alice@example.org>\r\n"
EHLO_STARTTLS = b"250-mx.example.net\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
CREDENTIALS = Credentials("joe", "s3cret")
JUNK = "Remote host sent a reply with non-printable or non-ASCII characters"


def client(**config: object) -> Client:
    return Client(ClientConfig(HELO, **config), [message()])  # type: ignore[arg-type]


def test_happy_path_steps_and_bytes() -> None:
    c = client(tls=TlsPolicy.NONE)
    assert step(c) is Step.GREETING
    assert c.receive_data(GREETING) == [Send(EHLO)]
    assert step(c) is Step.HELLO
    assert c.receive_data(EHLO_BASIC) == [Send(MAIL)]
    assert step(c) is Step.MAIL
    assert c.receive_data(OK) == [Send(b"RCPT TO:<bob@example.net>\r\n")]
    assert step(c) is Step.RCPT
    assert c.receive_data(OK) == [Send(b"DATA\r\n")]
    assert step(c) is Step.DATA_INIT
    assert c.receive_data(b"354 go ahead\r\n") == [SendContent(0)]
    assert step(c) is Step.DATA_BLOCK
    assert c.content(b"Subject: hi\r\n\r\n.hidden\r\n") == [
        Send(b"Subject: hi\r\n\r\n..hidden\r\n")
    ]
    assert c.end_content() == [Send(b".\r\n")]
    assert step(c) is Step.DATA_TERM
    assert c.receive_data(b"250 2.0.0 Ok: queued as 1234\r\n") == [
        RecipientResult(0, 0, Result.ok("250 2.0.0 Ok: queued as 1234")),
        TransactionDone(0),
        Send(b"QUIT\r\n"),
    ]
    assert step(c) is Step.QUIT
    assert c.receive_data(b"221 2.0.0 Bye\r\n") == [Close()]
    assert c.closed and c.step is None
    assert c.receive_eof() == []


def test_replies_split_anywhere() -> None:
    c = client(tls=TlsPolicy.NONE)
    events = []
    for byte in GREETING + b"250-mx.example.net\r\n250 SIZE 100\r\n":
        events += c.receive_data(bytes([byte]))
    assert events == [Send(EHLO), Send(b"MAIL FROM:<alice@example.org>\r\n")]
    assert c.extensions.size == 100


@pytest.mark.parametrize("code", [b"500", b"502", b"550"])
def test_helo_fallback(code: bytes) -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC)
    c.receive_data(GREETING)
    assert c.receive_data(code + b" 5.5.1 what?\r\n") == [Send(b"HELO relay.example.org\r\n")]
    assert step(c) is Step.HELLO
    assert c.receive_data(b"250 mx.example.net\r\n") == [Send(MAIL)]
    assert not c.extensions.eightbitmime


def test_ehlo_4xx_fails_the_session() -> None:
    c = client(tls=TlsPolicy.NONE)
    c.receive_data(GREETING)
    events = c.receive_data(b"451 4.3.0 try later\r\n")
    result, unsettled = failure(events)
    assert result == Result.tempfail("EHLO rejected: 451 4.3.0 try later", StatusCode(4, 3, 0))
    assert unsettled == ((0, 0),)
    assert events[1:] == [Send(b"QUIT\r\n"), Close()]


@pytest.mark.parametrize(
    "config",
    [
        {"tls": TlsPolicy.REQUIRED},
        {"tls": TlsPolicy.SMTPS, "credentials": CREDENTIALS},
        {"tls": TlsPolicy.NONE, "lmtp": True},
    ],
)
def test_no_helo_fallback_when_extensions_are_needed(config: dict[str, object]) -> None:
    c = client(**config)
    first = c.receive_data(GREETING)
    assert sent(first) in (EHLO, b"LHLO relay.example.org\r\n")
    events = c.receive_data(b"502 5.5.2 no\r\n")
    assert failure(events)[0].outcome is Outcome.TEMPFAIL
    assert events[-1] == Close()


def test_banner_rejected() -> None:
    c = client()
    events = c.receive_data(b"554 5.3.2 go away\r\n")
    assert events == [
        SessionFailed(
            Result.tempfail("Banner rejected: 554 5.3.2 go away", StatusCode(4, 3, 2)), ((0, 0),)
        ),
        Send(b"QUIT\r\n"),
        Close(),
    ]


# -- STARTTLS -------------------------------------------------------------


def test_opportunistic_starttls_then_ehlo_again() -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC)
    c.receive_data(GREETING)
    assert c.receive_data(EHLO_STARTTLS) == [Send(b"STARTTLS\r\n")]
    assert step(c) is Step.STARTTLS
    assert c.receive_data(b"220 2.0.0 Ready to start TLS\r\n") == [StartTls()]
    assert (step(c), c.secure) == (Step.TLS_HANDSHAKE, False)
    assert c.tls_established() == [Send(EHLO)]
    assert (c.secure, c.extensions.starttls) == (True, False)
    # STARTTLS offered again over TLS: not taken up twice
    assert c.receive_data(EHLO_STARTTLS) == [Send(MAIL)]


def test_plaintext_injected_after_the_220_is_discarded() -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    injected = b"220 ready\r\n250-evil\r\n250 AUTH PLAIN\r\n250 Ok\r\n250 Ok\r\n354 go"
    assert c.receive_data(injected) == [StartTls()]
    assert c.receive_data(b"250 more plaintext\r\n") == []  # the driver should not, but
    assert c.tls_established() == [Send(EHLO)]
    assert c.receive_data(b"250-mx.example.net\r\n250 SIZE 5000\r\n") == [Send(MAIL)]
    assert c.extensions.size == 5000 and not c.extensions.auth


def test_injected_bytes_do_not_leave_a_partial_reply_behind() -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    assert c.receive_data(b"220 ready\r\n250-half a repl") == [StartTls()]
    c.tls_established()
    assert c.receive_data(b"250 mx.example.net\r\n") == [Send(MAIL)]


def test_opportunistic_without_starttls_goes_on_in_plaintext() -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC)
    c.receive_data(GREETING)
    assert c.receive_data(EHLO_BASIC) == [Send(MAIL)]
    assert not c.secure


def test_opportunistic_starttls_refused_goes_on_in_plaintext() -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    assert c.receive_data(b"454 4.7.0 TLS not available\r\n") == [Send(MAIL)]


def test_required_tls_not_offered() -> None:
    c = client(tls=TlsPolicy.REQUIRED, verify=False)
    c.receive_data(GREETING)
    events = c.receive_data(EHLO_BASIC)
    assert events == [
        SessionFailed(Result.tempfail("TLS required but not supported by remote host"), ((0, 0),)),
        Send(b"QUIT\r\n"),
        Close(),
    ]


def test_required_tls_refused() -> None:
    c = client(tls=TlsPolicy.REQUIRED)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    events = c.receive_data(b"454 4.7.0 TLS not available\r\n")
    assert failure(events)[0] == Result.tempfail(
        "STARTTLS rejected: 454 4.7.0 TLS not available", StatusCode(4, 7, 0)
    )
    assert b"MAIL" not in sent(events)


def test_required_tls_taken() -> None:
    c = client(tls=TlsPolicy.REQUIRED)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    assert c.receive_data(b"220 go\r\n") == [StartTls()]
    assert c.tls_established() == [Send(EHLO)]
    assert c.receive_data(EHLO_BASIC) == [Send(MAIL)]


@pytest.mark.parametrize("policy", [TlsPolicy.NONE, TlsPolicy.SMTPS])
def test_no_starttls_when_off_or_already_on(policy: TlsPolicy) -> None:
    c = client(tls=policy)
    assert c.secure is (policy is TlsPolicy.SMTPS)
    c.receive_data(GREETING)
    assert c.receive_data(EHLO_STARTTLS) == [Send(MAIL)]


def test_handshake_failure_reported_by_the_driver() -> None:
    c = client(tls=TlsPolicy.REQUIRED)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    c.receive_data(b"220 go\r\n")
    events = c.fail("TLS handshake failed: certificate verify failed")
    assert events == [
        SessionFailed(
            Result.tempfail("TLS handshake failed: certificate verify failed"), ((0, 0),)
        ),
        Close(),
    ]
    with pytest.raises(RuntimeError):
        c.tls_established()


# -- AUTH -----------------------------------------------------------------


def tls_client(ehlo: bytes, **config: object) -> tuple[Client, list[Event]]:
    c = client(tls=TlsPolicy.OPPORTUNISTIC, credentials=CREDENTIALS, **config)
    c.receive_data(GREETING)
    c.receive_data(EHLO_STARTTLS)
    c.receive_data(b"220 go\r\n")
    c.tls_established()
    return c, list(c.receive_data(ehlo))


def test_auth_plain_over_tls() -> None:
    c, events = tls_client(b"250-mx\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n")
    token = base64.b64encode(b"\0joe\0s3cret")
    assert events == [Send(b"AUTH PLAIN " + token + b"\r\n")]
    assert step(c) is Step.AUTH
    assert c.receive_data(b"235 2.7.0 Authentication successful\r\n") == [Send(MAIL)]


def test_auth_login_when_plain_is_not_offered() -> None:
    c, events = tls_client(b"250-mx\r\n250 AUTH=LOGIN\r\n")
    assert events == [Send(b"AUTH LOGIN\r\n")]
    assert c.receive_data(b"334 VXNlcm5hbWU6\r\n") == [Send(b"am9l\r\n")]
    assert c.receive_data(b"334 UGFzc3dvcmQ6\r\n") == [Send(b"czNjcmV0\r\n")]
    assert c.receive_data(b"235 2.7.0 ok\r\n") == [Send(MAIL)]


def test_auth_rejected_is_a_temporary_failure_of_the_session() -> None:
    c, _ = tls_client(b"250-mx\r\n250 AUTH PLAIN\r\n")
    events = c.receive_data(b"535 5.7.8 Authentication credentials invalid\r\n")
    assert events == [
        SessionFailed(
            Result.tempfail(
                "AUTH rejected: 535 5.7.8 Authentication credentials invalid", StatusCode(4, 7, 8)
            ),
            ((0, 0),),
        ),
        Send(b"QUIT\r\n"),
        Close(),
    ]


def test_auth_login_rejected_after_the_user_name() -> None:
    c, _ = tls_client(b"250-mx\r\n250 AUTH LOGIN\r\n")
    c.receive_data(b"334 VXNlcm5hbWU6\r\n")
    events = c.receive_data(b"535 5.7.8 no\r\n")
    assert failure(events)[0].text == "AUTH rejected: 535 5.7.8 no"


def test_auth_without_a_usable_mechanism() -> None:
    _, events = tls_client(b"250-mx\r\n250 AUTH CRAM-MD5 XOAUTH2\r\n")
    assert failure(events)[0] == Result.tempfail("No supported AUTH mechanism")
    assert b"AUTH" not in sent(events)


def test_never_auth_over_plaintext() -> None:
    c = client(tls=TlsPolicy.OPPORTUNISTIC, credentials=CREDENTIALS)
    c.receive_data(GREETING)
    events = c.receive_data(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n")
    assert events == [
        SessionFailed(Result.tempfail("Refuse to AUTH over insecure channel"), ((0, 0),)),
        Send(b"QUIT\r\n"),
        Close(),
    ]


def test_auth_over_smtps() -> None:
    c = client(tls=TlsPolicy.SMTPS, credentials=CREDENTIALS)
    c.receive_data(GREETING)
    events = c.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    assert sent(events).startswith(b"AUTH PLAIN ")


def test_credentials_are_not_in_the_repr() -> None:
    assert "s3cret" not in repr(ClientConfig(HELO, credentials=CREDENTIALS))


def test_bad_helo_name_refused() -> None:
    with pytest.raises(ValueError):
        ClientConfig("relay.example.org\r\nRCPT TO:<x@y>")


# -- session failures -----------------------------------------------------


def test_421_at_any_point() -> None:
    scripts = [
        [],
        [GREETING],
        [GREETING, EHLO_BASIC],
        [GREETING, EHLO_BASIC, OK],
        [GREETING, EHLO_BASIC, OK, OK],
    ]
    for script in scripts:
        c = client(tls=TlsPolicy.NONE)
        for data in script:
            c.receive_data(data)
        events = c.receive_data(b"421 4.3.2 Service shutting down\r\n")
        assert events == [
            SessionFailed(
                Result.tempfail("421 4.3.2 Service shutting down", StatusCode(4, 3, 2)), ((0, 0),)
            ),
            Close(),
        ], script
        assert c.receive_data(b"250 late\r\n") == []


def test_421_after_the_dot() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK)
    c.receive_data(b"354 go\r\n")
    c.content(b"x\r\n")
    c.end_content()
    events = c.receive_data(b"421 4.4.2 timeout\r\n")
    assert failure(events) == (Result.tempfail("421 4.4.2 timeout", StatusCode(4, 4, 2)), ((0, 0),))


def test_unsolicited_421_during_content() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK)
    c.receive_data(b"354 go\r\n")
    events = c.receive_data(b"421 4.3.0 bye\r\n")
    assert events == [
        SessionFailed(Result.tempfail("421 4.3.0 bye", StatusCode(4, 3, 0)), ((0, 0),)),
        Close(),
    ]
    assert c.content(b"more\r\n") == []  # the driver stops at Close
    assert c.end_content() == []


def test_reply_nobody_asked_for() -> None:
    c, _ = ready([message()])
    events = c.receive_data(OK + OK + b"354 go\r\n" + OK)  # the 250 came during content
    assert failure(events)[0] == Result.tempfail("Remote host sent unexpected data")


def test_data_answered_with_250() -> None:
    c, _ = ready([message()])
    events = c.receive_data(OK + OK + OK)
    assert failure(events)[0] == Result.tempfail("Unexpected reply to DATA: 250 2.0.0 Ok")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"abc hello\r\n", "Malformed reply: not an SMTP reply: b'abc hello'"),
        (b"600 no\r\n", "Malformed reply: not an SMTP reply: b'600 no'"),
        (b"25\r\n", "Malformed reply: not an SMTP reply: b'25'"),
        (
            b"250-mx\r\n251 SIZE\r\n",
            "Malformed reply: reply code changed inside a multi-line reply",
        ),
        (b"250-" + b"x" * 1001 + b"\r\n", "Malformed reply: reply line too long"),
        (b"250-" + b"x" * 2000, "Malformed reply: reply line too long"),
        (b"250-x\r\n" * 101 + b"250 x\r\n", "Malformed reply: too many reply lines"),
        (b"250 caf\xc3\xa9\r\n", JUNK),
        (
            b"250 \xff\xfe\r\n",
            "Remote host sent a reply with non-printable or non-ASCII characters",
        ),
        (b"250 a\x00b\r\n", "Remote host sent a reply with non-printable or non-ASCII characters"),
        (
            b"250 a\x1b[2Jb\r\n",
            "Remote host sent a reply with non-printable or non-ASCII characters",
        ),
    ],
)
def test_malformed_replies_fail_the_session(data: bytes, reason: str) -> None:
    c = client(tls=TlsPolicy.NONE)
    c.receive_data(GREETING)
    events = c.receive_data(data)
    assert events == [SessionFailed(Result.tempfail(reason), ((0, 0),)), Close()]


def test_malformed_reply_text_is_escaped() -> None:
    c = client(tls=TlsPolicy.NONE)
    events = c.receive_data(b"2\x1b0 \r\n")
    text = failure(events)[0].text
    assert "\x1b" not in text and "\\x1b" in text


def test_replies_before_a_malformed_line_count() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK)
    c.receive_data(b"354 go\r\n")
    c.content(b"x\r\n")
    c.end_content()
    events = c.receive_data(b"250 2.0.0 queued\r\nGARBAGE\r\n")
    assert events == [
        RecipientResult(0, 0, Result.ok("250 2.0.0 queued")),
        TransactionDone(0),
        Send(b"QUIT\r\n"),
        SessionFailed(Result.tempfail("Malformed reply: not an SMTP reply: b'GARBAGE'"), ()),
        Close(),
    ]


def test_connection_closed_before_the_greeting() -> None:
    c = client()
    assert c.receive_eof() == [
        SessionFailed(Result.tempfail("Connection closed by remote host"), ((0, 0),)),
        Close(),
    ]


def test_connection_closed_mid_reply() -> None:
    c = client(tls=TlsPolicy.NONE)
    c.receive_data(GREETING + b"250-mx.example.net\r\n250-PIPE")
    events = c.receive_eof()
    assert failure(events)[0] == Result.tempfail(
        "Connection closed by remote host in the middle of a reply"
    )


def test_connection_closed_mid_data() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK + b"354 go\r\n")
    c.content(b"half a mess")
    events = c.receive_eof()
    assert events == [
        SessionFailed(Result.tempfail("Connection closed by remote host during DATA"), ((0, 0),)),
        Close(),
    ]


def test_connection_closed_waiting_for_the_dot_reply() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK + b"354 go\r\n")
    c.end_content()
    events = c.receive_eof()
    assert failure(events)[0].text == "Connection closed by remote host during DATA"


def test_connection_closed_after_quit_is_fine() -> None:
    c, _ = ready([message()])
    c.receive_data(OK + OK + b"354 go\r\n")
    c.end_content()
    c.receive_data(OK)
    assert step(c) is Step.QUIT
    assert c.receive_eof() == [Close()]


def test_driver_timeout_settles_what_is_left() -> None:
    c, _ = ready([message("bob@example.net", "carol@example.net")])
    c.receive_data(OK)
    events = c.receive_data(b"550 5.1.1 no bob\r\n")
    assert [type(e) for e in events] == [RecipientResult, Send]
    assert step(c) is Step.RCPT
    assert c.fail("timeout (rcpt)") == [
        SessionFailed(Result.tempfail("timeout (rcpt)"), ((0, 1),)),
        Close(),
    ]


def test_transaction_without_recipients_refused() -> None:
    with pytest.raises(ValueError):
        Client(ClientConfig(HELO), [Transaction("alice@example.org", ())])


def test_no_transactions_just_quits() -> None:
    c = Client(ClientConfig(HELO, tls=TlsPolicy.NONE), [])
    c.receive_data(GREETING)
    assert c.receive_data(EHLO_BASIC) == [Send(b"QUIT\r\n")]
    assert c.receive_data(b"221 bye\r\n") == [Close()]
