"""Faults of a test server, without a server: what a :class:`Fault` accepts,
the reply it sends, which commands it matches, and the order and counts a
:class:`FaultSet` applies them in."""

from __future__ import annotations

import threading

import pytest

from mta.reply import Reply
from mta.testing.faults import PHASES, Fault, FaultSet, parse_reply


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("451 4.3.0 Try again later", Reply.of(451, "4.3.0", "Try again later")),
        ("550 5.1.1 No such user here", Reply.of(550, "5.1.1", "No such user here")),
        ("452 Too busy", Reply.of(452, None, "Too busy")),
        ("554", Reply.of(554, None, "")),
        ("451 4.3.0", Reply.of(451, "4.3.0", "")),
        ("421 4.4.5 Going away", Reply.of(421, "4.4.5", "Going away", close=True)),
        ("550 5.7.1text", Reply.of(550, None, "5.7.1text")),  # no space: plain text
    ],
)
def test_a_reply_line_becomes_the_reply_sent(text: str, reply: Reply) -> None:
    assert parse_reply(text) == reply


def test_the_reply_is_sent_as_given() -> None:
    for text in ("451 4.3.0 Try again later", "550 no thanks"):
        assert parse_reply(text).encode() == text.encode() + b"\r\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("250 2.0.0 Ok", "4xx or 5xx"),
        ("354 go ahead", "4xx or 5xx"),
        ("try later", "4xx or 5xx"),
        ("45 short", "4xx or 5xx"),
        ("4510 too long", "4xx or 5xx"),
        ("", "4xx or 5xx"),
        ("451 4.3.0 one\r\n451 4.3.0 two", "one line"),
        ("550 a\nb", "one line"),
        ("451 5.0.0 mixed", "enhanced status code 5.0.0 for reply code 451"),
        ("550 4.1.1 mixed", "enhanced status code 4.1.1 for reply code 550"),
    ],
)
def test_a_reply_that_is_no_failure_line_is_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_reply(text)
    with pytest.raises(ValueError, match=words):
        Fault(reply=text)


def test_a_fault_defaults_to_rcpt_and_every_command() -> None:
    fault = Fault(reply="451 4.3.0 later")
    assert fault.at == "rcpt" and fault.rcpt is None and fault.times is None
    assert not fault.disconnect and fault.delay == 0.0
    assert fault.matches("rcpt", ["anyone@example.net"])
    assert not fault.matches("mail") and not fault.matches("data", ["anyone@example.net"])


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"at": "RCPT", "reply": "451 x"}, "at must be one of connect, mail, rcpt, data, commit"),
        ({"at": "quit", "reply": "451 x"}, "not 'quit'"),
        ({"at": "connect", "rcpt": "bob@x.test", "reply": "554 x"}, "rcpt must be None"),
        ({"at": "mail", "rcpt": "*", "reply": "451 x"}, "before any recipient"),
        ({"rcpt": "", "reply": "451 x"}, "address or a pattern"),
        ({"rcpt": "<>", "reply": "451 x"}, "address or a pattern"),
        ({"at": "data"}, "needs a reply, disconnect=True or a delay"),
        ({"reply": "451 x", "delay": -1}, "delay must be a number of seconds >= 0"),
        ({"reply": "451 x", "delay": float("inf")}, "delay must be"),
        ({"reply": "451 x", "delay": float("nan")}, "delay must be"),
        ({"reply": "451 x", "delay": "2"}, "delay must be"),
        ({"reply": "451 x", "delay": True}, "delay must be"),
        ({"reply": "451 x", "times": 0}, "times must be None or a count >= 1"),
        ({"reply": "451 x", "times": 1.5}, "times must be"),
        ({"reply": "451 x", "disconnect": 1}, "disconnect must be True or False"),
        ({"reply": 451}, "reply must be a string"),
    ],
)
def test_fields_that_make_no_sense_are_refused_with_the_reason(
    fields: dict[str, object], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Fault(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("at", PHASES)
def test_every_phase_takes_a_disconnect_or_a_delay_alone(at: str) -> None:
    assert Fault(at=at, disconnect=True).smtp_reply is None
    assert Fault(at=at, delay=0.5).smtp_reply is None


def test_a_disconnect_closes_after_the_reply() -> None:
    assert Fault(reply="451 4.3.0 later").smtp_reply == Reply.of(451, "4.3.0", "later")
    reply = Fault(reply="451 4.3.0 later", disconnect=True).smtp_reply
    assert reply == Reply.of(451, "4.3.0", "later", close=True)
    assert Fault(reply="421 4.3.2 bye").smtp_reply == Reply.of(421, "4.3.2", "bye", close=True)


@pytest.mark.parametrize(
    ("pattern", "address", "matched"),
    [
        ("bob@example.net", "bob@example.net", True),
        ("bob@example.net", "BOB@Example.NET", True),
        ("BOB@EXAMPLE.NET", "bob@example.net", True),
        ("<bob@example.net>", "bob@example.net", True),
        ("bob@example.net", "bob@example.network", False),
        ("bob@example.net", "rbob@example.net", False),
        ("*@example.net", "carol@example.net", True),
        ("*@example.net", "carol@sub.example.net", False),
        ("*@*example.net", "carol@sub.example.net", True),
        ("bob+*@example.net", "bob+tag@example.net", True),
        ("bob?@example.net", "bob2@example.net", True),
        ("bob[0-9]@example.net", "bobx@example.net", False),
        ("*", "anyone@anywhere.test", True),
    ],
)
def test_rcpt_is_an_address_or_a_pattern_in_any_case(
    pattern: str, address: str, matched: bool
) -> None:
    fault = Fault(rcpt=pattern, reply="550 5.1.1 no")
    assert fault.matches("rcpt", [address]) is matched


def test_later_phases_match_any_recipient_accepted_so_far() -> None:
    fault = Fault(rcpt="bob@example.net", at="commit", reply="451 4.3.0 later")
    assert fault.matches("commit", ["alice@example.net", "bob@example.net"])
    assert not fault.matches("commit", ["alice@example.net"])
    assert not fault.matches("commit", [])
    assert not fault.matches("data", ["bob@example.net"])  # another phase
    assert Fault(at="commit", reply="451 x").matches("commit", [])


def test_the_first_fault_added_that_matches_wins() -> None:
    faults = FaultSet()
    bob = Fault(rcpt="bob@example.net", reply="550 5.1.1 bob")
    anyone = Fault(reply="451 4.3.0 anyone")
    data = Fault(at="data", reply="452 4.3.1 data")
    faults.add(bob)
    faults.add(anyone)
    faults.add(data)
    assert faults.take("rcpt", ["bob@example.net"]) is bob
    assert faults.take("rcpt", ["carol@example.net"]) is anyone
    assert faults.take("data", ["bob@example.net"]) is data
    assert faults.take("mail") is None and faults.take("connect") is None
    assert faults.take("commit", ["bob@example.net"]) is None
    assert faults.faults == (bob, anyone, data) and len(faults) == 3  # still in force


def test_faults_apply_until_cleared() -> None:
    faults = FaultSet([Fault(at="mail", reply="451 4.3.0 later")])
    for _ in range(50):
        assert faults.take("mail") is not None
    faults.clear()
    assert faults.take("mail") is None and faults.faults == () and len(faults) == 0


def test_times_limits_a_fault_to_so_many_commands() -> None:
    once = Fault(at="mail", reply="451 4.3.0 once", times=1)
    twice = Fault(at="mail", reply="452 4.3.1 twice", times=2)
    faults = FaultSet([once, twice])
    assert [faults.take("mail") for _ in range(4)] == [once, twice, twice, None]
    assert faults.faults == ()


def test_a_fault_of_another_recipient_is_not_used_up() -> None:
    bob = Fault(rcpt="bob@example.net", reply="550 5.1.1 bob", times=1)
    faults = FaultSet([bob])
    assert faults.take("rcpt", ["carol@example.net"]) is None
    assert faults.take("rcpt", ["bob@example.net"]) is bob
    assert faults.take("rcpt", ["bob@example.net"]) is None


def test_only_faults_are_added() -> None:
    with pytest.raises(TypeError, match="takes a Fault"):
        FaultSet().add("451 4.3.0 later")  # type: ignore[arg-type]


def test_threads_adding_and_taking_count_every_use_once() -> None:
    # the test thread adds while the server's thread takes: each of the
    # 4 x 100 uses of the faults is given out exactly once
    faults = FaultSet()
    taken: list[Fault] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(1000):
            fault = faults.take("mail")
            if fault is not None:
                with lock:
                    taken.append(fault)

    def add() -> None:
        for _ in range(4):
            faults.add(Fault(at="mail", reply="451 4.3.0 later", times=100))

    threads = [threading.Thread(target=take) for _ in range(4)] + [threading.Thread(target=add)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while (fault := faults.take("mail")) is not None:
        taken.append(fault)
    assert len(taken) == 400 and len(faults) == 0
