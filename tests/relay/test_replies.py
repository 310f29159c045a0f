"""Tests for mta.relay.replies: EHLO keywords, reply checks and results."""

from __future__ import annotations

from mta.delivery.result import Result
from mta.relay.replies import Extensions, check, result_of, tempfail_of, too_many_recipients
from mta.reply import Reply


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
    assert result_of(Reply(550, "5.1.1", ("no",))) == Result.permfail("550 5.1.1 no", 11)
    assert result_of(Reply(451, None, ("later",))) == Result.tempfail("451 later", 0)
    assert result_of(Reply(550, "5.7.26", ("dmarc",))).status == "5.7.0"
    assert result_of(Reply(354, None, ("go",))).status == "4.0.0"
    assert tempfail_of(Reply(554, "5.7.1", ("no",)), "X: ") == Result.tempfail(
        "X: 554 5.7.1 no", 71
    )


def test_too_many_recipients() -> None:
    assert too_many_recipients(Reply(452, None, ("Too many recipients",)))
    assert too_many_recipients(Reply(452, "4.5.3", ("x",)))
    assert not too_many_recipients(Reply(452, "4.3.1", ("Insufficient system storage",)))
    assert too_many_recipients(Reply(552, "5.5.3", ("x",)))
    assert too_many_recipients(Reply(552, None, ("Too many recipients",)))
    assert not too_many_recipients(Reply(552, "5.2.2", ("mailbox full",)))
    assert not too_many_recipients(Reply(450, None, ("Too many recipients",)))
