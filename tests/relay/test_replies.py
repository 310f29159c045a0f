"""Tests for mta.relay.replies: EHLO keywords, reply checks and results."""

from __future__ import annotations

import pytest

from mta.delivery.result import Result
from mta.enqueue.smtp import ReplyParser
from mta.relay.replies import (
    Extensions,
    check,
    result_of,
    status_of,
    tempfail_of,
    too_many_recipients,
)
from mta.reply import Reply
from mta.status import StatusCode


def ehlo(*lines: str) -> Reply:
    return Reply(250, None, ("mx.example.net", *lines))


def test_extensions() -> None:
    ext = Extensions.parse(
        ehlo("pipelining", "SIZE 35882577", "8BITMIME", "STARTTLS", "AUTH PLAIN login", "DSN")
    )
    assert ext == Extensions(
        pipelining=True,
        starttls=True,
        size=35882577,
        eightbitmime=True,
        smtputf8=False,
        dsn=True,
        auth=frozenset({"PLAIN", "LOGIN"}),
    )
    assert Extensions.parse(ehlo("SIZE")).size == 0
    assert Extensions.parse(ehlo("SIZE nonsense")).size == 0
    assert Extensions.parse(ehlo("SMTPUTF8")).smtputf8
    assert Extensions.parse(ehlo("AUTH=LOGIN PLAIN")).auth == {"LOGIN", "PLAIN"}
    assert Extensions.parse(Reply(250, None, ("mx.example.net PIPELINING",))) == Extensions()


def test_check() -> None:
    assert check(Reply(250, None, ("fine\ttext",))) is None
    assert check(Reply(250, None, ("caf\u00e9",))) is not None
    assert check(Reply(250, None, ("a", "b\x00"))) is not None


def test_result_of() -> None:
    assert result_of(Reply(250, "2.0.0", ("Ok",))) == Result.ok("250 2.0.0 Ok")
    assert result_of(Reply(550, "5.1.1", ("no",))) == Result.permfail(
        "550 5.1.1 no", StatusCode(5, 1, 1)
    )
    assert result_of(Reply(451, None, ("later",))) == Result.tempfail(
        "451 later", StatusCode(4, 0, 0)
    )
    assert result_of(Reply(354, None, ("go",))).status == "4.0.0"
    assert tempfail_of(Reply(554, "5.7.1", ("no",)), "X: ") == Result.tempfail(
        "X: 554 5.7.1 no", StatusCode(4, 7, 1)
    )


@pytest.mark.parametrize(
    ("code", "enhanced", "status"),
    [
        (550, "5.7.26", "5.7.26"),  # DMARC (RFC 7372)
        (550, "5.7.350", "5.7.350"),
        (451, "4.7.28", "4.7.28"),
        (550, "5.1.10", "5.1.10"),
        (550, "5.999.999", "5.999.999"),
        (550, "5.01.1", "5.1.1"),
    ],
)
def test_result_of_keeps_the_remote_code(code: int, enhanced: str, status: str) -> None:
    result = result_of(Reply(code, enhanced, ("text",)))
    assert result.status == status
    assert result.text == f"{code} {enhanced} text"


@pytest.mark.parametrize(
    "enhanced", ["5.1000.1", "5.1.1000", "5.1", "x.y.z", "5.1.1 ", "3.1.1", "5.\u0663.1", ""]
)
def test_a_malformed_remote_code_is_never_stored(enhanced: str) -> None:
    """A Reply the parser would not make still gives a valid code: x.0.0."""
    assert status_of(Reply(550, enhanced, ("x",))) == StatusCode(5, 0, 0)
    assert result_of(Reply(550, enhanced, ("x",))).status == "5.0.0"
    assert result_of(Reply(451, enhanced, ("x",))).status == "4.0.0"


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"550 5.7.350 Remote server returned message detected as spam\r\n", "5.7.350"),
        (b"452-4.7.28 first line\r\n452 4.7.28 rate limited\r\n", "4.7.28"),
        (b"550 5.7.3500 too long a detail\r\n", "5.0.0"),
        (b"550 5.1.10.2 not a code\r\n", "5.0.0"),
        (b"550 4.1.1 wrong class\r\n", "5.0.0"),
        (b"550 no code at all\r\n", "5.0.0"),
    ],
)
def test_from_the_wire_to_the_result(wire: bytes, status: str) -> None:
    [reply] = ReplyParser().feed(wire)
    assert result_of(reply).status == status


def test_too_many_recipients() -> None:
    assert too_many_recipients(Reply(452, None, ("Too many recipients",)))
    assert too_many_recipients(Reply(452, "4.5.3", ("x",)))
    assert not too_many_recipients(Reply(452, "4.3.1", ("Insufficient system storage",)))
    assert too_many_recipients(Reply(552, "5.5.3", ("x",)))
    assert too_many_recipients(Reply(552, None, ("Too many recipients",)))
    assert not too_many_recipients(Reply(552, "5.2.2", ("mailbox full",)))
    assert not too_many_recipients(Reply(450, None, ("Too many recipients",)))
