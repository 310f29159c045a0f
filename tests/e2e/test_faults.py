"""End to end: a real ``mta -d`` relays to an in-process server with injected
faults, and sees exactly the replies injected.

The receiving side runs in the test's own trio loop: mta's sessions
(:class:`~mta.server.session.Session`) on a loopback socket the OS picked,
with a :class:`~mta.testing.faults.FaultSet` in their services, as a test
server has them.  It accepts mail for ``example.net`` and keeps it in its
spool (nothing delivers it).  The relaying daemon (instance A) logs each
attempt; a 4xx leaves the envelope queued for a retry, a 5xx bounces to the
local sender.
"""

from __future__ import annotations

import contextlib
import functools
import mailbox
import pathlib
import smtplib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import attrs
import pytest
import trio

from mta.daemon.generation import Generation
from mta.server.listeners import Bound
from mta.server.session import Session
from mta.testing.faults import Fault, FaultSet
from tests.e2e.daemon import Daemon, has_mail, start
from tests.server.memory_session import generation_of

RECEIVER = """
table users { bob = "65534:65534:/nonexistent" }
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/unused/%{user.username}" userbase <users>
match from any for domain "example.net" action "local"
"""

USERS = 'table users { bob = "65534:65534:/nonexistent", alice = "65534:65534:/nonexistent" }'
MESSAGE = b"From: alice@localhost\r\nTo: bob@example.net\r\nSubject: faults\r\n\r\nHello.\r\n"
MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]


@attrs.frozen
class Receiver:
    """The in-process receiving server: its port, its faults, its spool."""

    port: int
    faults: FaultSet
    generation: Generation

    def stored(self) -> int:
        return len(list(self.generation.services.spool.store.iter_envelopes()))


@contextlib.asynccontextmanager
async def receiver(directory: pathlib.Path) -> AsyncIterator[Receiver]:
    """mta's sessions, with faults, on 127.0.0.1 and a port the OS picks."""
    faults = FaultSet()
    async with generation_of(RECEIVER, directory / "spool") as generation:
        generation.services = services = attrs.evolve(generation.services, faults=faults)
        listener = generation.config.listeners[0]

        async def serve(stream: trio.SocketStream) -> None:
            with socket.socket() as placeholder:  # a Bound needs one; sessions never use it
                bound = Bound(listener, placeholder, "127.0.0.1", 2525, True)
            await Session(services, generation.endpoint(bound), stream).run()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(services.watchdog.run)
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            yield Receiver(port, faults, generation)
            nursery.cancel_scope.cancel()


async def sender(directory: pathlib.Path, shared: pathlib.Path, port: int) -> tuple[Daemon, int]:
    """Instance A: relays everything but its own localhost mail to ``port``;
    the daemon and its SMTP port."""
    directory.mkdir()
    config = f"""{USERS}
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/a/%{{user.username}}" userbase <users>
action "out" relay host "smtp://127.0.0.1:{port}"
match from any for domain "localhost" action "local"
match from any for any action "out"
"""
    return await trio.to_thread.run_sync(start, directory, config)


@attrs.frozen
class Relay:
    """Instance A (``a``, listening on ``port``) relaying to the receiver ``b``."""

    a: Daemon
    port: int
    b: Receiver

    async def send(self, rcpts: list[str]) -> None:
        """A message from alice@localhost submitted to A."""
        await trio.to_thread.run_sync(submit, self.port, rcpts)

    def attempts(self) -> list[str]:
        """A's log lines of relay attempts."""
        return [line for line in self.a.log().splitlines() if " mta delivery " in line]


@contextlib.asynccontextmanager
async def relay_faults(
    tmp_path: pathlib.Path, shared: pathlib.Path, *faults: Fault
) -> AsyncIterator[Relay]:
    """A relaying to a receiver with ``faults``."""
    async with receiver(tmp_path / "b") as b:
        for fault in faults:
            b.faults.add(fault)
        a, port = await sender(tmp_path / "a", shared, b.port)
        try:
            yield Relay(a, port, b)
        finally:
            await trio.to_thread.run_sync(a.stop)


def submit(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail("alice@localhost", rcpts, MESSAGE) == {}


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (in trio: the receiving side keeps serving) until ``check`` is true."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.05)


@pytest.mark.parametrize(
    ("fault", "stat"),
    [
        pytest.param(
            Fault(rcpt="bob@example.net", reply="451 4.3.0 Injected: try again later"),
            "451 4.3.0 Injected: try again later",
            id="451-at-rcpt",
        ),
        pytest.param(
            Fault(at="connect", reply="421 4.3.2 Injected: not now"),
            "421 4.3.2 Injected: not now",
            id="421-greeting",
        ),
        pytest.param(
            Fault(at="data", disconnect=True), "Connection closed by remote host", id="disconnect"
        ),
    ],
)
async def test_a_temporary_failure_is_logged_with_its_text_and_the_envelope_waits(
    tmp_path: pathlib.Path, shared: pathlib.Path, fault: Fault, stat: str
) -> None:
    async with relay_faults(tmp_path, shared, fault) as relay:
        await relay.send(["bob@example.net"])
        await until(lambda: len(relay.attempts()) == 1)
        [line] = relay.attempts()
        assert "to=<bob@example.net> rcpt=<bob@example.net> " in line, line
        assert line.endswith(f'result=TempFail stat="{stat}"'), line
        assert len(relay.a.queued()) == 1 and relay.b.stored() == 0


async def test_a_5xx_at_rcpt_bounces_with_its_text(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    fault = Fault(rcpt="*@example.net", reply="550 5.1.1 Injected: no such user")
    async with relay_faults(tmp_path, shared, fault) as relay:
        await relay.send(["bob@example.net"])
        alice = shared / "a" / "alice"
        await until(lambda: has_mail(alice))
        [line] = relay.attempts()
        assert 'result=PermFail stat="550 5.1.1 Injected: no such user"' in line, line
        [bounce] = list(mailbox.Maildir(str(alice), create=False))
        text = bounce.as_string()
        assert "Action: failed" in text and "Status: 5.1.1" in text
        assert "550 5.1.1 Injected: no such user" in text
        await until(lambda: relay.a.queued() == [])
        assert relay.b.stored() == 0


async def test_a_fault_at_commit_then_cleared_lets_the_retry_through(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    fault = Fault(at="commit", reply="452 4.3.1 Injected: insufficient storage")
    async with relay_faults(tmp_path, shared, fault) as relay:
        await relay.send(["bob@example.net"])
        await until(lambda: len(relay.attempts()) == 1)
        assert (
            'result=TempFail stat="452 4.3.1 Injected: insufficient storage"'
            in (relay.attempts()[0])
        )
        assert relay.b.stored() == 0  # refused after the dot: nothing kept
        relay.b.faults.clear()
        done = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [*MTACTL, "--spool", str(relay.a.spool), "schedule", "all"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        )
        assert done.stdout == "1 envelope(s) scheduled\n"
        await until(lambda: len(relay.attempts()) == 2)
        assert "result=Ok" in relay.attempts()[1], relay.a.log()
        await until(lambda: relay.a.queued() == [])
        assert relay.b.stored() == 1
