"""RFC 2920 pipelining after EHLO; refused before; DATA and STARTTLS end a group."""

from __future__ import annotations

from mta.config.model import TlsMode
from mta.reply import Reply
from mta.smtp import events as ev
from tests.smtp.test_server_support import Client, rejecting

REFUSED = "500 5.5.1 Invalid command: Pipelining not supported\r\n"


def test_a_whole_transaction_in_groups() -> None:
    client = Client()
    client.ehlo()
    out = client.lines(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example>\r\n"
    )
    assert out == [
        "250 2.0.0 Ok",
        "250 2.1.5 Destination address valid: Recipient ok",
        "250 2.1.5 Destination address valid: Recipient ok",
    ]
    assert client.send("DATA\r\n").startswith("354 ")
    out = client.lines("body\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<g@h.example>\r\nNOOP\r\n")
    assert out == [
        "250 2.0.0 0000abcd Message accepted for delivery",
        "250 2.0.0 Ok",
        "250 2.1.5 Destination address valid: Recipient ok",
        "250 2.0.0 Ok",
    ]
    assert [type(e) for e in client.events[-4:]] == [
        ev.DataChunk,
        ev.DataEnd,
        ev.MailFrom,
        ev.RcptTo,
    ]
    kinds = [type(e) for e in client.events]
    assert kinds.count(ev.MailFrom) == 2 and kinds.count(ev.RcptTo) == 3


def test_replies_keep_command_order_with_rejections() -> None:
    client = Client(rejecting(ev.RcptTo, Reply.of(550, None, "Invalid recipient")))
    client.ehlo()
    out = client.lines("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nNOOP\r\nRSET\r\n")
    assert out == ["250 2.0.0 Ok", "550 Invalid recipient", "250 2.0.0 Ok", "250 2.0.0 Reset state"]


def test_replies_wait_in_data_to_send_until_flushed() -> None:
    client = Client()
    client.ehlo()
    conn = client.conn
    conn.receive_data(b"NOOP\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\n")
    event = conn.next_event()
    assert isinstance(event, ev.MailFrom)
    conn.accept()
    assert conn.next_event() is ev.NEED_DATA
    assert conn.data_to_send() == b"250 2.0.0 Ok\r\n" * 3


def test_pipelining_before_ehlo_is_refused() -> None:
    client = Client()
    assert client.send("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n") == REFUSED
    assert client.events == [ev.ConnectionClosed("pipelining")]


def test_pipelining_after_helo_is_refused() -> None:
    client = Client()
    client.send("HELO client.example\r\n")
    assert client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n") == REFUSED
    assert client.of(ev.MailFrom) == []
    assert client.conn.closed


def test_a_partial_line_after_a_command_counts_as_pipelining() -> None:
    client = Client()
    assert client.send("NOOP\r\nNO") == REFUSED


def test_helo_session_one_command_at_a_time_is_fine() -> None:
    client = Client()
    client.send("HELO client.example\r\n")
    assert client.send("MAIL FROM:<a@b.example>\r\n") == "250 2.0.0 Ok\r\n"
    assert client.send("RCPT TO:<c@d.example>\r\n").startswith("250 ")
    assert client.send("DATA\r\n").startswith("354 ")
    assert client.send("x\r\n.\r\n").startswith("250 ")


def test_content_before_the_354_is_refused() -> None:
    client = Client()
    client.ehlo()
    client.mail()
    client.rcpt()
    assert client.send("DATA\r\nSubject: early\r\n\r\n.\r\n") == (
        "500 5.5.1 Invalid command: Message content sent before the 354 reply\r\n"
    )
    assert client.events[-1] == ev.ConnectionClosed("pipelining")
    assert client.of(ev.DataStart) == []


def test_content_after_a_failing_data_is_refused_too() -> None:
    client = Client()
    client.ehlo()
    client.mail()
    out = client.send("DATA\r\nMAIL FROM:<smuggled@example.com>\r\n")
    assert out.startswith("500 5.5.1 ")
    assert len(client.of(ev.MailFrom)) == 1


def test_whole_group_with_data_last() -> None:
    client = Client()
    client.ehlo()
    out = client.lines("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    assert out[-1].startswith("354 ")
    assert client.send("x\r\n.\r\nQUIT\r\n").splitlines() == [
        "250 2.0.0 0000abcd Message accepted for delivery",
        "221 2.0.0 Bye",
    ]


def test_plaintext_after_starttls_closes_the_session() -> None:
    client = Client(tls=TlsMode.STARTTLS)
    client.ehlo()
    out = client.send("STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
    assert out == "220 2.0.0 Ready to start TLS\r\n"
    assert client.conn.closed
    assert client.events[-1] == ev.ConnectionClosed("starttls-injection")
    assert client.of(ev.MailFrom) == []


def test_a_large_group_is_answered_in_full() -> None:
    client = Client()
    client.ehlo()
    client.conn.receive_data(b"NOOP\r\n" * 10000 + b"NO")
    assert client.conn.next_event() is ev.NEED_DATA
    assert client.conn.data_to_send() == b"250 2.0.0 Ok\r\n" * 10000
    assert client.conn.buffered == 2
    assert client.send("OP\r\n") == "250 2.0.0 Ok\r\n"
    assert client.conn.buffered == 0
