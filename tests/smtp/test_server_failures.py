"""The refusals the state machine notes for the driver's log (``failures``):
every 4xx and 5xx reply once, with the command line it answers."""

from __future__ import annotations

from mta.config.model import AuthMode, TlsMode
from mta.reply import Reply
from mta.smtp import events as ev
from mta.smtp import replies
from mta.smtp.server import COMMAND_LINE_MAX
from tests.smtp.test_server_support import Client, rejecting


def noted(client: Client) -> list[tuple[str | None, str]]:
    """The failures noted so far, as (command, reply text); and forget them."""
    found = [(command, reply.text) for command, reply in client.conn.failures]
    client.conn.failures.clear()
    return found


def test_each_refusal_is_noted_once_with_its_command() -> None:
    client = Client(max_rcpt=1)
    client.send("XYZZY now\r\n")
    client.send("MAIL FROM:<alice@example.net>\r\n")  # before EHLO
    client.ehlo()
    client.mail()
    client.send("RCPT TO:<not an address\r\n")
    client.rcpt()
    client.send("rcpt to:<carol@example.org>\r\n")  # one recipient at most
    assert noted(client) == [
        ("XYZZY now", "500 5.5.1 Invalid command: Command unrecognized"),
        ("MAIL FROM:<alice@example.net>", replies.NOT_ALLOWED.text),
        ("RCPT TO:<not an address", "501 5.1.3 Recipient address syntax error"),
        ("rcpt to:<carol@example.org>", "452 4.5.3 Too many recipients: Too many recipients"),
    ]


def test_replies_that_succeed_are_not_noted() -> None:
    client = Client()
    client.ready_for_data()
    client.send("Subject: s\r\n\r\nbody\r\n.\r\nNOOP\r\nRSET\r\nQUIT\r\n")
    assert client.conn.closed
    assert noted(client) == []


def test_a_refusal_at_the_end_of_data_answers_data() -> None:
    client = Client()
    client.ready_for_data()
    client.send(b"Subject: s\r\n\r\nnul \0 here\r\n.\r\n")
    assert noted(client) == [("DATA", replies.DATA_NUL.text)]


def test_the_driver_refusing_a_request_is_noted() -> None:
    refused = Reply.of(550, "5.7.1", "Go away")
    client = Client(rejecting(ev.MailFrom, refused))
    client.ehlo()
    client.mail("<mallory@example.net>")
    assert noted(client) == [("MAIL FROM:<mallory@example.net>", "550 5.7.1 Go away")]


def test_bad_characters_are_noted_with_the_line() -> None:
    client = Client()
    client.send(b"NOOP a\0b\r\n")
    assert noted(client) == [("NOOP a\0b", replies.BAD_CHARACTERS.text)]


def test_input_that_is_no_command_is_noted_without_one() -> None:
    client = Client()
    client.send("NOOP " + "x" * COMMAND_LINE_MAX + "\r\n")
    assert noted(client) == [(None, replies.COMMAND_TOO_LONG.text)]
    client = Client()
    client.send("HELO a.example\r\nNOOP\r\n")  # pipelined before EHLO
    assert noted(client) == [(None, replies.PIPELINING_REFUSED.text)]
    client = Client()
    client.ready_for_data()
    client.send(b"y" * 70000 + b"\r\n")
    assert noted(client) == [(None, replies.LINE_TOO_LONG.text)]


def test_auth_secrets_never_reach_the_log() -> None:
    client = Client(auth=AuthMode.OPTIONAL, secure=True, tls=TlsMode.SMTPS)
    client.ehlo()
    client.send("AUTH PLAIN not-base64!\r\n")
    client.send("AUTH LOGIN\r\n")
    client.send("not-base64-either!\r\n")
    client.send("AUTH PLAIN\r\n")
    client.send("*\r\n")
    assert noted(client) == [
        ("AUTH PLAIN ********", replies.AUTH_SYNTAX.text),
        ("AUTH LOGIN (username)", replies.AUTH_SYNTAX.text),
        ("AUTH PLAIN (...)", replies.AUTH_CANCELLED.text),
    ]


def test_a_refused_session_notes_an_empty_command_and_the_driver_reply_none() -> None:
    client = Client()
    client.conn.refuse(Reply.of(554, "5.7.1", "Not welcome"))
    client.send("NOOP\r\n")
    assert noted(client) == [
        ("", "554 5.7.1 Not welcome"),
        ("NOOP", replies.NOT_ALLOWED.text),
    ]
    client.conn.send_reply(Reply.of(421, "4.4.2", "Timeout, closing connection", close=True))
    assert noted(client) == []  # a reply of the driver's own answers no command
