"""The relay client's smtp-out report events (mta.relay.reports through
mta.relay.client, sans-IO), as OpenSMTPD 6.8's mta_session.c emits them
(the sequences below follow a recorded 6.8 session: test_relay_filters.py
compares the two servers end to end)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mta.filters.protocol import ProtocolVersion
from mta.relay.client import Client, ClientConfig, Credentials, TlsPolicy
from mta.relay.events import Event, Report, Send, StartTls
from mta.relay.reports import tx_result
from mta.relay.transaction import Recipient, Transaction
from tests.relay.clientkit import HELO, OK

MSGID = 0x0DFE6982
BOB = 0x0DFE6982545960D5
NOBODY = 0x0DFE69820DAC24BB
GREETING = b"220 mx.example.net ESMTP OpenSMTPD\r\n"
EHLO = b"250-mx.example.net Hello\r\n250-8BITMIME\r\n250 DSN\r\n"
WRITTEN = b"Subject: x\r\n\r\nbody\r\n..dot\r\n"
EHLO_PIPELINING = b"250-mx.example.net Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def tx(*rcpts: tuple[str, int]) -> Transaction:
    recipients = tuple(Recipient(address, evpid=evpid) for address, evpid in rcpts)
    return Transaction(
        "alice@ext.test", recipients or (Recipient("bob@far.test", evpid=BOB),), msgid=MSGID
    )


def reports(events: Sequence[Event]) -> list[str]:
    """The report events as ``event|params`` (protocol 0.7)."""
    return [
        "|".join((e.payload.EVENT.value, *e.payload.params(ProtocolVersion.V0_7)))
        for e in events
        if isinstance(e, Report)
    ]


def reported(client: Client, *replies: bytes) -> list[str]:
    """Feed ``replies`` one after the other: every report event on the way."""
    found: list[str] = []
    for reply in replies:
        found += reports(client.receive_data(reply))
    return found


def new(*transactions: Transaction, **config: object) -> Client:
    config.setdefault("tls", TlsPolicy.NONE)
    return Client(ClientConfig(HELO, **config), transactions or (tx(),), reports=True)  # type: ignore[arg-type]


def test_a_session_one_command_at_a_time_as_opensmtpd_reports_it() -> None:
    """The 6.8 recording: the refused recipient gets tx-rollback and tx-reset
    before its tx-rcpt, and the transaction goes on."""
    client = new(tx(("nobody@far.test", NOBODY), ("bob@far.test", BOB)))
    events = reported(
        client,
        GREETING,
        EHLO,
        b"250 2.0.0 Ok\r\n",
        b"550 Invalid recipient: <nobody@far.test>\r\n",
        b"250 2.1.5 Destination address valid: Recipient ok\r\n",
    )
    data = client.receive_data(b'354 Enter mail, end with "." on a line by itself\r\n')
    events += reports(data)
    events += reports(client.content(b"Subject: x\n\nbody\n.dot\n"))
    events += reports(client.end_content())
    events += reported(
        client, b"250 2.0.0 2b1ad1f7 Message accepted for delivery\r\n", b"221 2.0.0 Bye\r\n"
    )
    assert events == [
        "protocol-server|220 mx.example.net ESMTP OpenSMTPD",
        "link-greeting|mx.example.net",
        "protocol-client|EHLO relay.example.org",
        "link-identify|EHLO|relay.example.org",
        "protocol-server|250-mx.example.net Hello",
        "protocol-server|250-8BITMIME",
        "protocol-server|250 DSN",
        "protocol-client|MAIL FROM:<alice@ext.test>",
        "protocol-server|250 2.0.0 Ok",
        "tx-begin|0dfe6982",
        "tx-mail|0dfe6982|ok|alice@ext.test",
        "protocol-client|RCPT TO:<nobody@far.test>",
        "tx-envelope|0dfe6982|0dfe69820dac24bb",
        "protocol-server|550 Invalid recipient: <nobody@far.test>",
        "tx-rollback|0dfe6982",
        "tx-reset|0dfe6982",
        "tx-rcpt|0dfe6982|permfail|nobody@far.test",
        "protocol-client|RCPT TO:<bob@far.test>",
        "tx-envelope|0dfe6982|0dfe6982545960d5",
        "protocol-server|250 2.1.5 Destination address valid: Recipient ok",
        "tx-rcpt|0dfe6982|ok|bob@far.test",
        "protocol-client|DATA",
        'protocol-server|354 Enter mail, end with "." on a line by itself',
        "tx-data|0dfe6982|ok",
        "protocol-client|.",
        "protocol-server|250 2.0.0 2b1ad1f7 Message accepted for delivery",
        # the octets written: CRLF line ends and the stuffed dot, not the final dot
        f"tx-commit|0dfe6982|{len(WRITTEN)}",
        "tx-reset|0dfe6982",
        "protocol-client|QUIT",
        "protocol-server|221 2.0.0 Bye",
    ]
    assert client.closed


def test_pipelined_a_recipient_s_envelope_comes_with_its_reply() -> None:
    """mta pipelines (OpenSMTPD never does): one protocol-client a line, and
    tx-envelope after tx-begin as with 6.8."""
    client = new(tx(("bob@far.test", BOB), ("nobody@far.test", NOBODY)))
    events = reported(client, GREETING, EHLO_PIPELINING)
    assert events[-4:] == [
        "protocol-client|MAIL FROM:<alice@ext.test>",
        "protocol-client|RCPT TO:<bob@far.test>",
        "protocol-client|RCPT TO:<nobody@far.test>",
        "protocol-client|DATA",
    ]
    replies = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n452 4.5.3 later\r\n354 go\r\n"
    assert reported(client, replies) == [
        "protocol-server|250 2.1.0 ok",
        "tx-begin|0dfe6982",
        "tx-mail|0dfe6982|ok|alice@ext.test",
        "protocol-server|250 2.1.5 ok",
        "tx-envelope|0dfe6982|0dfe6982545960d5",
        "tx-rcpt|0dfe6982|ok|bob@far.test",
        "protocol-server|452 4.5.3 later",
        "tx-envelope|0dfe6982|0dfe69820dac24bb",
        "tx-rollback|0dfe6982",
        "tx-reset|0dfe6982",
        "tx-rcpt|0dfe6982|tempfail|nobody@far.test",
        "protocol-server|354 go",
        "tx-data|0dfe6982|ok",
    ]


def test_a_refused_mail_is_not_reported_and_a_refused_data_rolls_back() -> None:
    client = new(tx(), tx(("carol@far.test", 7)))
    assert reported(client, GREETING, EHLO, b"451 4.3.0 later\r\n")[-2:] == [
        "protocol-server|451 4.3.0 later",
        "protocol-client|MAIL FROM:<alice@ext.test>",  # the second transaction's
    ]
    events = reported(client, OK, OK, b"554 5.0.0 no\r\n")
    assert events[-6:] == [
        "protocol-client|DATA",
        "protocol-server|554 5.0.0 no",
        "tx-data|0dfe6982|permfail",
        "tx-rollback|0dfe6982",
        "tx-reset|0dfe6982",
        "protocol-client|RSET",
    ]


def test_a_message_refused_after_the_dot_rolls_back() -> None:
    client = new()
    reported(client, GREETING, EHLO, OK, OK, b"354 go\r\n")
    client.content(b"x\r\n")
    assert reports(client.end_content()) == ["protocol-client|."]
    assert reported(client, b"451 4.7.1 try later\r\n")[:3] == [
        "protocol-server|451 4.7.1 try later",
        "tx-rollback|0dfe6982",
        "tx-reset|0dfe6982",
    ]


def test_lmtp_reports_a_commit_or_rollback_for_each_recipient_s_reply() -> None:
    client = new(tx(("bob@far.test", BOB), ("nobody@far.test", NOBODY)), lmtp=True)
    events = reported(client, GREETING, EHLO, OK, OK, OK, b"354 go\r\n")
    assert "protocol-client|LHLO relay.example.org" in events
    assert "link-identify|LHLO|relay.example.org" in events
    client.content(b"hi\r\n")
    client.end_content()
    assert reported(client, b"250 2.0.0 bob ok\r\n552 5.2.2 full\r\n")[:6] == [
        "protocol-server|250 2.0.0 bob ok",
        "tx-commit|0dfe6982|4",
        "tx-reset|0dfe6982",
        "protocol-server|552 5.2.2 full",
        "tx-rollback|0dfe6982",
        "tx-reset|0dfe6982",
    ]


def test_helo_after_a_refused_ehlo_is_identified_too() -> None:
    client = new()
    events = reported(client, GREETING, b"500 what\r\n")
    assert events[-2:] == [
        "protocol-client|HELO relay.example.org",
        "link-identify|HELO|relay.example.org",
    ]


@pytest.mark.parametrize(
    ("banner", "word"),
    [
        (b"220 mx.example.net ESMTP\r\n", "mx.example.net"),
        (b"220 [192.0.2.1] ready\r\n", "[192.0.2.1]"),
        (b"220 not_a;domain here\r\n", ""),
        (b"220\r\n", ""),
        (b"220-first.example\r\n220 second line\r\n", "first.example"),
    ],
)
def test_the_greeting_is_the_banner_s_first_word_when_a_domain(banner: bytes, word: str) -> None:
    client = new()
    assert f"link-greeting|{word}" in reported(client, banner)


def test_a_refused_banner_has_no_greeting() -> None:
    client = new()
    assert reported(client, b"554 go away\r\n") == [
        "protocol-server|554 go away",
        "protocol-client|QUIT",
    ]


def test_auth_secrets_are_masked_and_its_result_reported() -> None:
    credentials = Credentials("alice", "secret")
    plain = new(tls=TlsPolicy.SMTPS, credentials=credentials)
    events = reported(plain, GREETING, b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n", b"235 2.7.0 ok\r\n")
    assert events[-4:-1] == [
        "protocol-client|AUTH PLAIN ********",
        "protocol-server|235 2.7.0 ok",
        "link-auth|pass|alice",
    ]
    login = new(tls=TlsPolicy.SMTPS, credentials=credentials)
    events = reported(
        login,
        GREETING,
        b"250-mx\r\n250 AUTH LOGIN\r\n",
        b"334 VXNlcm5hbWU6\r\n",
        b"334 UGFzc3dvcmQ6\r\n",
        b"535 5.7.8 no\r\n",
    )
    assert [e for e in events if e.startswith(("protocol-client", "link-auth"))][-5:] == [
        "protocol-client|AUTH LOGIN",
        "protocol-client|********",
        "protocol-client|********",
        "link-auth|fail|alice",
        "protocol-client|QUIT",
    ]
    assert not any("c2VjcmV0" in e or "YWxpY2U" in e for e in events)


def test_the_second_ehlo_after_starttls_is_identified_again() -> None:
    client = new(tls=TlsPolicy.REQUIRED)
    reported(client, GREETING, b"250-mx\r\n250 STARTTLS\r\n")
    events = client.receive_data(b"220 go ahead\r\n")
    assert StartTls() in events
    assert reports(client.tls_established()) == [
        "protocol-client|EHLO relay.example.org",
        "link-identify|EHLO|relay.example.org",
    ]


def test_lines_split_across_reads_are_reported_whole() -> None:
    client = new()
    events: list[str] = []
    for piece in (
        b"220 mx.exa",
        b"mple.net ESMTP\r",
        b"\n250-mx",
        b".example.net\r\n250 8BITMIME\r\n",
    ):
        events += reports(client.receive_data(piece))
    assert events[:2] == [
        "protocol-server|220 mx.example.net ESMTP",
        "link-greeting|mx.example.net",
    ]
    assert events[-3:-1] == ["protocol-server|250-mx.example.net", "protocol-server|250 8BITMIME"]


def test_without_reports_the_client_emits_none() -> None:
    client = Client(ClientConfig(HELO, tls=TlsPolicy.NONE), [tx()])
    assert not client.reports
    events = [*client.receive_data(GREETING), *client.receive_data(EHLO), *client.receive_data(OK)]
    assert not [e for e in events if isinstance(e, Report)]
    assert [e for e in events if isinstance(e, Send)]


def test_tx_results_follow_the_reply_class() -> None:
    assert [tx_result(code).value for code in (250, 354, 421, 452, 550)] == [
        "ok",
        "ok",
        "tempfail",
        "tempfail",
        "permfail",
    ]
