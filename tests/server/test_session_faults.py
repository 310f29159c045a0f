"""A test server's injected faults in a session, without sockets: at each phase
(connect, MAIL, RCPT, DATA, the end of DATA) a reply, a disconnect or a delay,
what the client sees, what the log says and what reaches the spool."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from mta.daemon.generation import Generation
from mta.server.session import Session
from mta.testing.faults import Fault, FaultSet
from tests.server.memory_session import Client, generation_of, open_session

CONFIG = """
table users { "bob" = "65534:65534:/nonexistent", "carol" = "65534:65534:/nonexistent" }
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/unused/%{user.username}" userbase <users>
match from any for domain "localhost" action "local"
"""

MESSAGE = "Subject: x\r\n\r\nbody\r\n."

STEPS = {
    "mail": ("MAIL FROM:<alice@example.org>",),
    "rcpt": ("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@localhost>"),
    "data": ("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@localhost>", "DATA"),
    "commit": ("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@localhost>", "DATA", MESSAGE),
}
"""The client's lines after EHLO up to the command each phase answers (the last one)."""

COMMANDS = {"mail": "MAIL FROM:<alice@example.org>", "rcpt": "RCPT TO:<bob@localhost>"}
COMMANDS |= {"data": "DATA", "commit": "DATA"}  # as failed-command names them (OpenSMTPD)


@pytest.fixture
async def generation(tmp_path: Path) -> AsyncIterator[Generation]:
    """A generation whose services carry a fault set (as a test server's do)."""
    async with generation_of(CONFIG, tmp_path / "spool") as gen:
        gen.services = attrs.evolve(gen.services, faults=FaultSet())
        yield gen


def faults_of(generation: Generation) -> FaultSet:
    faults = generation.services.faults
    assert faults is not None
    return faults


async def run_to(client: Client, at: str) -> str:
    """The lines of ``at``'s steps, each before the last answered positively:
    the reply to the last."""
    *before, last = STEPS[at]
    for line in before:
        assert (await client.command(line))[0] in "23", line
    return await client.command(last)


async def greeted(generation: Generation, nursery: trio.Nursery) -> tuple[Client, Session]:
    """A session (:func:`open_session`) past its EHLO."""
    client, served = await open_session(generation, nursery)
    assert (await client.command("EHLO client.test")).startswith("250")
    return client, served


def nothing_stored(generation: Generation) -> bool:
    spool = generation.services.spool
    incoming = Path(spool.paths.root) / "incoming"
    return (
        list(spool.store.iter_envelopes()) == []
        and spool.store.message_ids() == []
        and list(incoming.iterdir()) == []
    )


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


# -- at connect ---------------------------------------------------------------


async def test_a_reply_at_connect_replaces_the_banner_then_only_quit_is_served(
    generation: Generation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    faults_of(generation).add(Fault(at="connect", reply="554 5.3.2 Not now"))
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery, banner=False)
        assert await client.reply() == "554 5.3.2 Not now"
        assert (await client.command("EHLO client.test")).startswith("503 ")
        assert (await client.command("QUIT")).startswith("221 ")
    assert f'{served.id:016x} smtp failed-command command="" result="554 5.3.2 Not now"' in (
        messages(caplog)
    )


async def test_a_disconnect_at_connect_closes_without_a_word(
    generation: Generation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    faults_of(generation).add(Fault(at="connect", disconnect=True))
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery, banner=False)
        with pytest.raises(EOFError) as closed:
            await client.reply()
    assert closed.value.args == (b"",)
    assert served.reason == "fault"
    assert f"{served.id:016x} smtp disconnected reason=fault" in messages(caplog)


async def test_a_421_at_connect_closes_after_it(generation: Generation) -> None:
    faults_of(generation).add(Fault(at="connect", reply="421 4.3.2 Going down"))
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery, banner=False)
        assert await client.reply() == "421 4.3.2 Going down"
        with pytest.raises(EOFError):
            await client.reply()
    assert served.reason == "rejected"


async def test_a_delay_at_connect_holds_the_banner(
    generation: Generation, autojump_clock: trio.testing.MockClock
) -> None:
    faults_of(generation).add(Fault(at="connect", delay=40.0))
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        client, _ = await open_session(generation, nursery, banner=False)
        assert (await client.reply()).startswith("220 ")
        assert 40.0 <= trio.current_time() - started < 45.0
        assert (await client.command("QUIT")).startswith("221 ")


# -- a reply at MAIL, RCPT, DATA and the end of DATA ------------------------------


@pytest.mark.parametrize("at", ["mail", "rcpt", "data", "commit"])
async def test_a_reply_answers_the_command_and_nothing_is_queued(
    generation: Generation, caplog: pytest.LogCaptureFixture, at: str
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    faults_of(generation).add(Fault(at=at, reply="451 4.3.0 Injected failure"))
    async with trio.open_nursery() as nursery:
        client, served = await greeted(generation, nursery)
        assert await run_to(client, at) == "451 4.3.0 Injected failure"
        # the session goes on, and the fault applies again
        assert (await client.command("RSET")).startswith("250 ")
        assert await run_to(client, at) == "451 4.3.0 Injected failure"
        assert (await client.command("QUIT")).startswith("221 ")
    assert nothing_stored(generation)
    logged = f'{served.id:016x} smtp failed-command command="{COMMANDS[at]}" '
    assert messages(caplog).count(logged + 'result="451 4.3.0 Injected failure"') == 2
    assert " smtp message " not in caplog.text


async def test_once_cleared_the_server_answers_as_usual(generation: Generation) -> None:
    faults = faults_of(generation)
    faults.add(Fault(at="commit", reply="452 4.3.1 Full"))
    async with trio.open_nursery() as nursery:
        client, _ = await greeted(generation, nursery)
        assert await run_to(client, "commit") == "452 4.3.1 Full"
        faults.clear()
        *_, last = STEPS["commit"]
        for line in STEPS["commit"][:-1]:
            assert (await client.command(line))[0] in "23"
        assert (await client.command(last)).startswith("250 2.0.0 ")
        assert (await client.command("QUIT")).startswith("221 ")
    (envelope,) = generation.services.spool.store.iter_envelopes()
    assert str(envelope.rcpt) == "bob@localhost"


async def test_a_fault_at_rcpt_refuses_only_the_recipients_it_names(
    generation: Generation,
) -> None:
    faults_of(generation).add(Fault(rcpt="BOB@*", reply="550 5.1.1 No such user"))
    async with trio.open_nursery() as nursery:
        client, _ = await greeted(generation, nursery)
        assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("250 ")
        assert await client.command("RCPT TO:<bob@localhost>") == "550 5.1.1 No such user"
        assert (await client.command("RCPT TO:<carol@localhost>")).startswith("250 ")
        assert (await client.command("DATA")).startswith("354 ")
        assert (await client.command(MESSAGE)).startswith("250 2.0.0 ")
        assert (await client.command("QUIT")).startswith("221 ")
    (envelope,) = generation.services.spool.store.iter_envelopes()
    assert str(envelope.rcpt) == "carol@localhost"


async def test_a_fault_at_commit_for_a_recipient_fails_its_transactions_only(
    generation: Generation,
) -> None:
    faults_of(generation).add(Fault(rcpt="bob@localhost", at="commit", reply="451 4.3.0 Not bob"))

    async def send(client: Client, rcpts: list[str]) -> str:
        assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("250 ")
        for rcpt in rcpts:
            assert (await client.command(f"RCPT TO:<{rcpt}>")).startswith("250 ")
        assert (await client.command("DATA")).startswith("354 ")
        return await client.command(MESSAGE)

    async with trio.open_nursery() as nursery:
        client, _ = await greeted(generation, nursery)
        assert await send(client, ["carol@localhost", "bob@localhost"]) == "451 4.3.0 Not bob"
        assert (await send(client, ["carol@localhost"])).startswith("250 2.0.0 ")
        assert (await client.command("QUIT")).startswith("221 ")
    (envelope,) = generation.services.spool.store.iter_envelopes()
    assert str(envelope.rcpt) == "carol@localhost"


async def test_times_fails_so_many_commands_then_lets_them_through(
    generation: Generation,
) -> None:
    faults_of(generation).add(Fault(at="mail", reply="451 4.3.0 Busy", times=2))
    async with trio.open_nursery() as nursery:
        client, _ = await greeted(generation, nursery)
        for expected in ("451 4.3.0 Busy", "451 4.3.0 Busy", "250 2.0.0 Ok"):
            assert await client.command("MAIL FROM:<alice@example.org>") == expected
        assert (await client.command("QUIT")).startswith("221 ")
    assert faults_of(generation).faults == ()


# -- a disconnect -------------------------------------------------------------


@pytest.mark.parametrize("at", ["mail", "rcpt", "data", "commit"])
async def test_a_disconnect_closes_without_a_reply_and_nothing_is_queued(
    generation: Generation, caplog: pytest.LogCaptureFixture, at: str
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    faults_of(generation).add(Fault(at=at, disconnect=True))
    async with trio.open_nursery() as nursery:
        client, served = await greeted(generation, nursery)
        with pytest.raises(EOFError) as closed:
            await run_to(client, at)
    assert closed.value.args == (b"",)
    assert served.reason == "fault"
    assert nothing_stored(generation)
    assert "failed-command" not in caplog.text


@pytest.mark.parametrize("at", ["mail", "rcpt", "data", "commit"])
async def test_a_reply_with_disconnect_closes_after_the_reply(
    generation: Generation, at: str
) -> None:
    faults_of(generation).add(Fault(at=at, reply="554 5.0.0 Gone", disconnect=True))
    async with trio.open_nursery() as nursery:
        client, served = await greeted(generation, nursery)
        assert await run_to(client, at) == "554 5.0.0 Gone"
        with pytest.raises(EOFError):
            await client.reply()
    assert served.reason == "rejected"
    assert nothing_stored(generation)


# -- a delay --------------------------------------------------------------------
#
# Under the autojump clock, time jumps whenever every task waits, a worker
# thread's work included (the rules at RCPT, the spool at DATA and commit): so
# a command is timed exactly only when the fault's delay is all it waits for,
# and otherwise the test checks that no answer came before the delay was over.


async def timed(client: Client, at: str) -> tuple[str, float]:
    """:func:`run_to`, and how long the last command took (virtual seconds)."""
    *before, last = STEPS[at]
    for line in before:
        assert (await client.command(line))[0] in "23", line
    started = trio.current_time()
    reply = await client.command(last)
    return reply, trio.current_time() - started


@pytest.mark.parametrize("at", ["mail", "rcpt", "data", "commit"])
async def test_a_delay_then_a_reply(
    generation: Generation, autojump_clock: trio.testing.MockClock, at: str
) -> None:
    faults_of(generation).add(Fault(at=at, delay=12.5, reply="450 4.2.0 Slow no"))
    async with trio.open_nursery() as nursery:
        client, _ = await greeted(generation, nursery)
        reply, took = await timed(client, at)
        assert (await client.command("QUIT")).startswith("221 ")
    assert reply == "450 4.2.0 Slow no"
    if at == "commit":  # the spool's rollback comes before the reply
        assert took >= 12.5
    else:
        assert took == 12.5
    assert nothing_stored(generation)


@pytest.mark.parametrize("at", ["mail", "rcpt", "data", "commit"])
async def test_a_delay_alone_gives_the_usual_answer_once_over(
    generation: Generation, autojump_clock: trio.testing.MockClock, at: str
) -> None:
    usual = {"mail": "250 ", "rcpt": "250 ", "data": "354 ", "commit": "250 2.0.0 "}
    faults_of(generation).add(Fault(at=at, delay=30.0))
    async with trio.open_nursery() as nursery:
        client, _ = await greeted(generation, nursery)
        *before, last = STEPS[at]
        for line in before:
            assert (await client.command(line))[0] in "23", line
        started = trio.current_time()
        await client.stream.send_all(last.encode() + b"\r\n")
        with trio.move_on_after(29.0):
            early = await client.reply()
            pytest.fail(f"answered before the delay was over: {early}")
        reply = await client.reply()
        took = trio.current_time() - started
        if at == "data":
            assert (await client.command(MESSAGE)).startswith("250 2.0.0 ")
        assert (await client.command("QUIT")).startswith("221 ")
    assert reply.startswith(usual[at])
    if at == "mail":  # nothing else to wait for
        assert took == 30.0
    assert took >= 30.0
    stored = 1 if at in ("data", "commit") else 0
    assert len(list(generation.services.spool.store.iter_envelopes())) == stored


async def test_a_delay_then_a_disconnect(
    generation: Generation, autojump_clock: trio.testing.MockClock
) -> None:
    faults_of(generation).add(Fault(at="rcpt", delay=8.0, disconnect=True))
    async with trio.open_nursery() as nursery:
        client, served = await greeted(generation, nursery)
        started = trio.current_time()
        with pytest.raises(EOFError):
            await run_to(client, "rcpt")
        assert 8.0 <= trio.current_time() - started < 13.0
    assert served.reason == "fault"


# -- no faults: the daemon ---------------------------------------------------------


def test_the_daemon_never_loads_the_faults() -> None:
    code = (
        "import sys, mta.daemon.serve, mta.server.session;"
        "print('mta.testing.faults' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "False\n"
