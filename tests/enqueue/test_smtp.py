"""Client-side SMTP pieces: reply parsing, command lines, dot-stuffing."""

from __future__ import annotations

import pytest

from mta.enqueue.smtp import (
    REPLY_LINE_MAX,
    DotStuffer,
    ProtocolError,
    ReplyParser,
    command,
    extensions,
    mail_from,
    rcpt_to,
)
from mta.reply import Reply


def test_single_and_multiline_replies_across_chunks() -> None:
    parser = ReplyParser()
    assert parser.feed(b"220 host ESMTP mta\r\n250-host Hello\r\n250-SIZE 10") == [
        Reply(220, None, ("host ESMTP mta",))
    ]
    assert parser.pending
    replies = parser.feed(b"00\r\n250 HELP\r\n")
    assert replies == [Reply(250, None, ("host Hello", "SIZE 1000", "HELP"))]
    assert not parser.pending


def test_enhanced_code_split_off() -> None:
    parser = ReplyParser()
    (reply,) = parser.feed(b"550 5.1.1 Invalid recipient: <x@y>\r\n")
    assert (reply.code, reply.enhanced, reply.lines) == (
        550,
        "5.1.1",
        ("Invalid recipient: <x@y>",),
    )
    (reply,) = parser.feed(b"250 2.0.0 Ok\n")  # bare LF tolerated
    assert reply.enhanced == "2.0.0"
    (reply,) = parser.feed(b"354 Enter mail\r\n")
    assert reply.enhanced is None
    (reply,) = parser.feed(b"250\r\n")
    assert reply.lines == ("",)


@pytest.mark.parametrize(
    "bad",
    [b"hello\r\n", b"600 no\r\n", b"25 short\r\n", b"250x\r\n", b"250-a\r\n251 b\r\n"],
)
def test_protocol_errors(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(bad)


def test_reply_line_too_long() -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(b"250 " + b"x" * REPLY_LINE_MAX)


def test_command_refuses_line_breaks() -> None:
    assert command("EHLO", "localhost") == b"EHLO localhost\r\n"
    assert command("QUIT") == b"QUIT\r\n"
    with pytest.raises(ValueError):
        command("RCPT", "TO:<a@b>\r\nDATA")
    with pytest.raises(ValueError):
        rcpt_to("a@b\n", [])


def test_mail_and_rcpt_lines() -> None:
    assert mail_from("", ["SIZE=10"]) == b"MAIL FROM:<> SIZE=10\r\n"
    assert rcpt_to("b@c", ["NOTIFY=NEVER"]) == b"RCPT TO:<b@c> NOTIFY=NEVER\r\n"
    assert mail_from("j\u00f6@x", []) == "MAIL FROM:<j\u00f6@x>\r\n".encode()


def test_extensions() -> None:
    reply = Reply(250, None, ("host Hello", "size 100", "PIPELINING", "AUTH PLAIN LOGIN"))
    assert extensions(reply) == {"SIZE": "100", "PIPELINING": "", "AUTH": "PLAIN LOGIN"}


def stuff(chunks: list[bytes]) -> bytes:
    stuffer = DotStuffer()
    return b"".join(stuffer.feed(c) for c in chunks) + stuffer.finish()


def test_dot_stuffing() -> None:
    assert stuff([b".a\r\nb\r\n.\r\n..\r\n"]) == b"..a\r\nb\r\n..\r\n...\r\n.\r\n"


def test_dot_stuffing_across_chunk_boundaries() -> None:
    assert stuff([b"a\r\n", b".b\r", b"\n.c\r\n"]) == b"a\r\n..b\r\n..c\r\n.\r\n"


def test_finish_adds_missing_line_end() -> None:
    assert stuff([b"a"]) == b"a\r\n.\r\n"
    assert stuff([]) == b".\r\n"
