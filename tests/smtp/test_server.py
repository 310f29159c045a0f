"""The SMTP server state machine: commands, states and their exact replies."""

from __future__ import annotations

import pytest

from mta.config.model import AuthMode, TlsMode
from mta.envelope import NULL_ADDRESS, Address, Body, DsnNotify, DsnRet
from mta.reply import Reply
from mta.smtp import events as ev
from mta.smtp.server import COMMAND_LINE_MAX, ServerConnection
from tests.smtp.test_server_support import HOST, PEER, Client, rejecting, settings

GREETING = f"{HOST} Hello client.example [{PEER}], pleased to meet you"


def test_banner_names_the_software() -> None:
    assert Client().greeting == f"220 {HOST} ESMTP mta\r\n"


def test_ehlo_lists_extensions_in_order() -> None:
    client = Client(max_message_size=12345)
    assert client.ehlo().splitlines() == [
        f"250-{GREETING}",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
        "250-SIZE 12345",
        "250-DSN",
        "250-PIPELINING",
        "250-SMTPUTF8",
        "250 HELP",
    ]
    assert client.of(ev.Hello) == [ev.Hello("EHLO", "client.example")]
    assert client.conn.esmtp and client.conn.helo == "client.example"


def test_ehlo_without_dsn() -> None:
    assert "250-DSN" not in Client(dsn=False).ehlo()


def test_ehlo_offers_starttls_on_a_tls_listener() -> None:
    for mode in (TlsMode.STARTTLS, TlsMode.REQUIRE):
        lines = Client(tls=mode).ehlo().splitlines()
        assert lines[-2:] == ["250-STARTTLS", "250 HELP"]
    assert "STARTTLS" not in Client(tls=TlsMode.SMTPS, secure=True).ehlo()


def test_ehlo_offers_auth_only_when_secure() -> None:
    assert "AUTH" not in Client(auth=AuthMode.REQUIRED).ehlo()
    lines = Client(auth=AuthMode.OPTIONAL, secure=True, tls=TlsMode.SMTPS).ehlo().splitlines()
    assert lines[-2:] == ["250-AUTH PLAIN LOGIN", "250 HELP"]
    assert "AUTH" not in Client(auth=AuthMode.REQUIRED, secure=True, local=True).ehlo()


def test_ehlo_everything_in_order() -> None:
    lines = Client(tls=TlsMode.STARTTLS, auth=AuthMode.OPTIONAL).ehlo().splitlines()
    assert [line[4:] for line in lines[1:]] == [
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SIZE 1000000",
        "DSN",
        "PIPELINING",
        "SMTPUTF8",
        "STARTTLS",
        "HELP",
    ]


def test_helo() -> None:
    client = Client()
    assert client.send("HELO client.example\r\n") == f"250 {GREETING}\r\n"
    assert client.of(ev.Hello) == [ev.Hello("HELO", "client.example")]
    assert not client.conn.esmtp


def test_helo_shows_ipv6_and_local_peers_bracketed_once() -> None:
    assert Client(peer="2001:db8::1").send("HELO x.example\r\n") == (
        f"250 {HOST} Hello x.example [2001:db8::1], pleased to meet you\r\n"
    )
    assert "Hello x.example [local]," in Client(peer="local", local=True).send("EHLO x.example\n")


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_hello_errors(verb: str) -> None:
    client = Client()
    assert client.send(f"{verb}\r\n") == (
        f"501 5.5.1 Invalid command: {verb} requires domain name\r\n"
    )
    for bad in ["bad_", "-x.example", "x..example", "x.example.", "a b", "[1.2.3]", "ex\xe4mple"]:
        assert client.send(f"{verb} {bad}\r\n") == (
            "501 5.5.4 Invalid command arguments: Invalid domain name\r\n"
        ), bad
    assert client.of(ev.Hello) == []
    assert client.send(f"{verb} [192.0.2.7]\r\n").startswith("250")
    assert client.send(f"{verb} again.example\r\n") == (
        "503 5.5.1 Invalid command: Already identified\r\n"
    )
    client.send("RSET\r\n")
    assert client.send("EHLO again.example\r\n").startswith("503 5.5.1 Invalid command: Already")


@pytest.mark.parametrize("literal", ["[IPv6:2001:db8::1]", "[::1]", "[127.0.0.1]"])
def test_helo_address_literals(literal: str) -> None:
    assert Client().send(f"HELO {literal}\r\n").startswith("250 ")


def test_hello_before_banner() -> None:
    conn = ServerConnection(settings())
    conn.receive_data(b"EHLO x.example\r\n")
    assert conn.next_event() is ev.NEED_DATA
    assert (
        conn.data_to_send() == b"503 5.5.1 Invalid command: Command not allowed at this point.\r\n"
    )


def test_rejected_hello_leaves_the_session_unidentified() -> None:
    client = Client(rejecting(ev.Hello, Reply.of(550, "5.7.1", "Go away")))
    assert client.ehlo() == "550 5.7.1 Go away\r\n"
    assert client.conn.helo is None
    assert client.mail().startswith("503 ")


def test_unknown_and_fixed_commands() -> None:
    client = Client()
    assert client.send("FOO bar\r\n") == "500 5.5.1 Invalid command: Command unrecognized\r\n"
    assert client.send("\r\n") == "500 5.5.1 Invalid command: Command unrecognized\r\n"
    assert client.send("WIZ\r\n") == (
        "500 5.5.1 Invalid command: this feature is not supported yet ;-)\r\n"
    )
    assert client.send("noop anything at all\r\n") == "250 2.0.0 Ok\r\n"
    assert client.send("NOOP\r\n") == "250 2.0.0 Ok\r\n"
    assert client.send("help\r\n") == ("214-2.0.0 This is mta\r\n214 2.0.0 End of HELP info\r\n")


@pytest.mark.parametrize("verb", ["QUIT", "HELP", "WIZ", "DATA", "RSET"])
def test_commands_without_arguments(verb: str) -> None:
    client = Client()
    client.ehlo()
    assert client.send(f"{verb} x\r\n") == (
        "500 5.5.4 Invalid command arguments: command does not accept arguments.\r\n"
    )
    assert not client.conn.closed


def test_vrfy_and_expn_are_refused_with_252() -> None:
    client = Client()
    assert client.send("VRFY root\r\n") == (
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    )
    assert client.send("EXPN staff\r\n") == (
        "252 2.5.2 Cannot EXPN list, but will accept message and attempt delivery\r\n"
    )
    assert client.send("VRFY\r\n").startswith("501 5.5.4 ")
    assert client.send("EXPN\r\n").startswith("501 5.5.4 ")


def test_quit_closes() -> None:
    client = Client()
    client.ehlo()
    assert client.send("QUIT\r\n") == "221 2.0.0 Bye\r\n"
    assert client.events[-1] == ev.ConnectionClosed("quit")
    assert client.conn.closed
    client.conn.receive_data(b"NOOP\r\n")
    assert client.conn.next_event() == ev.ConnectionClosed("quit")
    assert client.conn.data_to_send() == b""


def test_end_of_file() -> None:
    client = Client()
    client.ehlo()
    assert client.feed(b"") == [ev.ConnectionClosed("disconnect")]


def test_commands_are_processed_before_end_of_file() -> None:
    client = Client()
    client.ehlo()
    client.conn.receive_data(b"NOOP\r\nQUIT\r\n")
    client.conn.receive_data(b"")
    assert client.pump() == [ev.ConnectionClosed("quit")]
    assert client.conn.data_to_send() == b"250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"


def test_rset() -> None:
    client = Client()
    assert client.send("RSET\r\n") == (
        "503 5.5.1 Invalid command: Command not allowed at this point.\r\n"
    )
    client.ehlo()
    client.mail()
    client.rcpt()
    assert client.send("RSET\r\n") == "250 2.0.0 Reset state\r\n"
    assert client.events[-1] == ev.TransactionReset()
    assert not client.conn.in_transaction
    assert client.send("DATA\r\n").startswith("503 5.5.1 ")
    assert client.mail() == "250 2.0.0 Ok\r\n"


def test_mail_rcpt_data_sequence_errors() -> None:
    client = Client()
    not_allowed = "503 5.5.1 Invalid command: Command not allowed at this point.\r\n"
    assert client.mail() == not_allowed
    client.ehlo()
    assert client.rcpt() == not_allowed
    assert client.send("DATA\r\n") == not_allowed
    assert client.mail() == "250 2.0.0 Ok\r\n"
    assert client.mail() == not_allowed
    assert client.send("DATA\r\n") == (
        "503 5.5.4 Invalid command arguments: No recipient specified\r\n"
    )
    assert client.rcpt() == "250 2.1.5 Destination address valid: Recipient ok\r\n"
    assert client.send("DATA\r\n") == '354 Enter mail, end with "." on a line by itself\r\n'


def test_mail_and_rcpt_events() -> None:
    client = Client()
    client.ehlo()
    client.send("MAIL FROM: <Alice@Example.NET> BODY=8BITMIME SIZE=100 RET=HDRS ENVID=QQ+2B1\r\n")
    client.send("rcpt to:<Bob@EXAMPLE.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob+40example.org\r\n")
    (mail,) = client.of(ev.MailFrom)
    assert mail.sender == Address("Alice", "example.net")
    assert (mail.params.body, mail.params.size, mail.params.ret, mail.params.envid) == (
        Body.EIGHTBITMIME,
        100,
        DsnRet.HDRS,
        "QQ+1",
    )
    (rcpt,) = client.of(ev.RcptTo)
    assert rcpt.rcpt == Address("Bob", "example.org")
    assert rcpt.params.notify == DsnNotify.SUCCESS | DsnNotify.DELAY
    assert rcpt.params.orcpt == "rfc822;bob@example.org"


def test_null_sender_and_local_recipient() -> None:
    client = Client()
    client.ehlo()
    assert client.mail("<>") == "250 2.0.0 Ok\r\n"
    assert client.rcpt("<postmaster>").startswith("250 ")
    assert client.of(ev.MailFrom)[0].sender == NULL_ADDRESS
    assert client.of(ev.RcptTo)[0].rcpt == Address("postmaster", HOST)
    assert client.rcpt("<>") == "501 5.1.3 Recipient address syntax error\r\n"


def test_address_syntax_errors() -> None:
    client = Client()
    client.ehlo()
    for bad in ["alice@example.net", "<alice@example.net", "<a..b@example.net>", ""]:
        assert client.send(f"MAIL FROM:{bad}\r\n") == "553 5.1.0 Sender address syntax error\r\n"
    client.mail()
    for bad in ["bob@example.org", "<bob@>", "<@example.org>", "<bob@-x.org>"]:
        assert client.send(f"RCPT TO:{bad}\r\n") == "501 5.1.3 Recipient address syntax error\r\n"
    assert len(client.of(ev.RcptTo)) == 0


def test_mail_and_rcpt_need_from_and_to() -> None:
    client = Client()
    client.ehlo()
    assert client.send("MAIL <a@b.example>\r\n") == (
        "501 5.5.4 Invalid command arguments: Syntax: MAIL FROM:<address>\r\n"
    )
    client.mail()
    assert client.send("RCPT <a@b.example>\r\n") == (
        "501 5.5.4 Invalid command arguments: Syntax: RCPT TO:<address>\r\n"
    )


def test_smtputf8_addresses() -> None:
    client = Client()
    client.ehlo()
    assert client.mail("<jos\xe9@exampl\xe9.example>") == (
        "553 5.6.7 Non-ASCII addresses require SMTPUTF8\r\n"
    )
    assert client.send(b"MAIL FROM:<jos\xff@example.net> SMTPUTF8\r\n") == (
        "553 5.6.7 Address is not valid UTF-8\r\n"
    )
    assert client.mail("<jos\xe9@exampl\xe9.example> SMTPUTF8") == "250 2.0.0 Ok\r\n"
    assert client.rcpt("<\u7528\u6237@\u4f8b\u3048.example>").startswith("250 ")
    assert client.of(ev.MailFrom)[0].params.smtputf8
    assert client.of(ev.RcptTo)[0].rcpt == Address("\u7528\u6237", "\u4f8b\u3048.example")
    client.send("RSET\r\n")
    client.mail()
    assert client.rcpt("<\u7528\u6237@example.org>").startswith("553 5.6.7 ")


def test_unknown_and_duplicate_parameters() -> None:
    client = Client()
    client.ehlo()
    assert client.mail("<a@b.example> FOO=BAR") == "555 5.5.4 Unsupported option FOO=BAR\r\n"
    assert client.mail("<a@b.example> SIZE=1 SIZE=2") == (
        "501 5.5.4 Invalid command arguments: Duplicate option SIZE\r\n"
    )
    client.mail()
    assert client.rcpt("<b@c.example> FOO") == "555 5.5.4 Unsupported option FOO\r\n"


def test_dsn_parameters_need_dsn() -> None:
    client = Client(dsn=False)
    client.ehlo()
    assert client.mail("<a@b.example> RET=FULL") == "555 5.5.4 Unsupported option RET=FULL\r\n"
    client.mail()
    assert client.rcpt("<b@c.example> NOTIFY=NEVER") == (
        "555 5.5.4 Unsupported option NOTIFY=NEVER\r\n"
    )


def test_size_parameter_over_the_limit() -> None:
    client = Client(max_message_size=1000)
    client.ehlo()
    assert client.mail("<a@b.example> SIZE=1001").startswith("552 5.3.4 Message too big for system")
    assert client.mail("<a@b.example> SIZE=1000") == "250 2.0.0 Ok\r\n"


def test_too_many_recipients() -> None:
    client = Client(max_rcpt=2)
    client.ehlo()
    client.mail()
    assert client.rcpt("<a@b.example>").startswith("250")
    assert client.rcpt("<c@d.example>").startswith("250")
    assert client.rcpt("<e@f.example>") == (
        "452 4.5.3 Too many recipients: Too many recipients\r\n"
    )


def test_refused_recipients_do_not_count() -> None:
    client = Client(rejecting(ev.RcptTo, Reply.of(550, None, "Invalid recipient")), max_rcpt=1)
    client.ehlo()
    client.mail()
    assert client.rcpt() == "550 Invalid recipient\r\n"
    assert client.rcpt() == "550 Invalid recipient\r\n"
    assert client.send("DATA\r\n").startswith("503 5.5.4 ")


def test_too_many_messages() -> None:
    client = Client(max_mails=1)
    client.ehlo()
    client.mail()
    client.rcpt()
    client.send("DATA\r\n")
    assert client.send("hi\r\n.\r\n") == "250 2.0.0 0000abcd Message accepted for delivery\r\n"
    assert client.mail() == "452 4.5.3 Too many recipients: Too many messages sent\r\n"


def test_rejected_mail_opens_no_transaction() -> None:
    client = Client(rejecting(ev.MailFrom, Reply.of(530, "5.7.0", "Sender rejected")))
    client.ehlo()
    assert client.mail() == "530 5.7.0 Sender rejected\r\n"
    assert client.rcpt().startswith("503 ")


def test_tls_required_before_mail() -> None:
    client = Client(tls=TlsMode.REQUIRE)
    client.ehlo()
    assert client.mail() == "530 5.5.1 Invalid command: Must issue a STARTTLS command first\r\n"


def test_auth_required_before_mail() -> None:
    client = Client(auth=AuthMode.REQUIRED, secure=True, tls=TlsMode.SMTPS)
    client.ehlo()
    assert client.mail() == "530 5.5.1 Invalid command: Must issue an AUTH command first\r\n"
    local = Client(auth=AuthMode.REQUIRED, local=True, peer="local")
    local.ehlo()
    assert local.mail() == "250 2.0.0 Ok\r\n"


def test_reject_with_close() -> None:
    client = Client(rejecting(ev.RcptTo, Reply.of(421, "4.3.0", "Temporary failure", close=True)))
    client.ehlo()
    client.mail()
    assert client.rcpt() == "421 4.3.0 Temporary failure\r\n"
    assert client.events[-1] == ev.ConnectionClosed("rejected")


def test_send_reply_for_timeouts() -> None:
    client = Client()
    client.conn.send_reply(Reply.of(421, "4.4.2", "Timeout", close=True))
    assert client.conn.closed
    assert client.conn.data_to_send() == b"421 4.4.2 Timeout\r\n"


def test_decisions_are_enforced() -> None:
    conn = ServerConnection(settings())
    conn.banner()
    with pytest.raises(RuntimeError):
        conn.accept()
    conn.receive_data(b"EHLO x.example\r\n")
    assert isinstance(conn.next_event(), ev.Hello)
    assert conn.pending == ev.Hello("EHLO", "x.example")
    with pytest.raises(RuntimeError):
        conn.next_event()
    with pytest.raises(RuntimeError):
        conn.accept_message("1")
    conn.accept()
    assert conn.pending is None


def test_end_of_data_needs_accept_message() -> None:
    client = Client(decide=lambda conn, event: None)
    conn = client.conn
    for line in [
        b"EHLO x.example\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"RCPT TO:<c@d.example>\r\n",
    ]:
        conn.receive_data(line)
        conn.next_event()
        conn.accept()
    conn.receive_data(b"DATA\r\n")
    conn.next_event()
    conn.accept()
    conn.receive_data(b".\r\n")
    assert conn.next_event() == ev.DataEnd(0, None)
    with pytest.raises(RuntimeError):
        conn.accept()
    conn.reject(Reply.of(451, "4.3.0", "Temporary failure"))
    assert not conn.in_transaction


def test_bare_lf_and_bad_characters_in_commands() -> None:
    client = Client()
    assert client.send("EHLO client.example\n").startswith("250-")
    assert (
        client.send(b"NOOP\rNOOP\r\n") == "501 5.5.2 Syntax error: Invalid character in command\r\n"
    )
    assert client.send(b"NO\0OP\r\n") == "501 5.5.2 Syntax error: Invalid character in command\r\n"
    assert not client.conn.closed


def test_command_line_limits() -> None:
    client = Client()
    client.ehlo()
    longest = "NOOP " + "x" * (COMMAND_LINE_MAX - 6)
    assert client.send(longest + "\r\n") == "250 2.0.0 Ok\r\n"
    assert client.send(longest + "x\r\n") == "500 5.0.0 Command line too long\r\n"
    assert client.events[-1] == ev.ConnectionClosed("command-too-long")


def test_unfinished_command_line_is_bounded() -> None:
    client = Client()
    client.ehlo()
    client.feed(b"NOOP " + b"x" * 5000)
    assert client.conn.data_to_send() == b"500 5.0.0 Command line too long\r\n"
    assert client.conn.closed and client.conn.buffered == 0
