"""Submitting through the local socket: transactions, refusals, splitting, lost servers."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from mta.enqueue.compose import Content
from mta.enqueue.submit import ClientTimeouts, Stage, Submission, SubmitResult, submit
from mta.reply import Reply
from tests.e2e.daemon import Daemon
from tests.enqueue.daemons import queued, running

MESSAGE = Content(b"Subject: submit\r\n\r\n.dot line\r\nbody\r\n")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("submit")) as d:
        yield d


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    head = "smtp limit max-rcpt 2 max-mails 2"
    with running(tmp_path_factory.mktemp("limited"), head) as d:
        yield d


def sock(d: Daemon) -> str:
    return str(d.spool / "enqueue.sock")


def messages_for(d: Daemon, rcpt: str) -> list[tuple[list[str], bytes]]:
    return [
        ([str(e.rcpt) for e in envs], content)
        for envs, content in queued(d)
        if any(str(e.rcpt) == rcpt for e in envs)
    ]


async def test_submits_and_dot_stuffs(daemon: Daemon) -> None:
    result = await submit(sock(daemon), Submission("a@x.example", ("s1@r.example",)), MESSAGE)
    assert result == SubmitResult(delivered=("s1@r.example",))
    assert result.complete and result.exit_code == os.EX_OK
    [(rcpts, content)] = messages_for(daemon, "s1@r.example")
    assert rcpts == ["s1@r.example"]
    assert content.endswith(b"\r\n\r\n.dot line\r\nbody\r\n")


async def test_all_or_nothing_when_one_recipient_is_refused(daemon: Daemon) -> None:
    submission = Submission("a@x.example", ("s2@r.example", "nobody@localhost", "bob@localhost"))
    result = await submit(sock(daemon), submission, MESSAGE)
    assert result.delivered == ()
    [(rcpt, reply)] = result.refused
    assert rcpt == "nobody@localhost" and reply.code == 550
    assert result.pending == ("s2@r.example", "bob@localhost")
    assert result.stage is Stage.RCPT
    assert result.exit_code == os.EX_NOUSER
    assert messages_for(daemon, "s2@r.example") == []


async def test_partial_sends_to_the_accepted(daemon: Daemon) -> None:
    submission = Submission("a@x.example", ("s3@r.example", "nobody@localhost"))
    result = await submit(sock(daemon), submission, MESSAGE, partial=True)
    assert result.delivered == ("s3@r.example",)
    assert [r for r, _ in result.refused] == ["nobody@localhost"]
    assert result.pending == ()
    assert len(messages_for(daemon, "s3@r.example")) == 1


async def test_nothing_accepted(daemon: Daemon) -> None:
    submission = Submission("a@x.example", ("nobody@localhost",))
    result = await submit(sock(daemon), submission, MESSAGE, partial=True)
    assert result.delivered == () and result.exit_code == os.EX_NOUSER


async def test_bad_sender_is_a_data_error(daemon: Daemon) -> None:
    result = await submit(sock(daemon), Submission("a@[bad", ("s4@r.example",)), MESSAGE)
    assert result.stage is Stage.MAIL and result.error is not None
    assert result.error.code == 553
    assert result.exit_code == os.EX_DATAERR
    assert result.pending == ("s4@r.example",)


async def test_too_many_recipients_split_into_transactions_and_sessions(limited: Daemon) -> None:
    rcpts = tuple(f"split{i}@r.example" for i in range(7))
    result = await submit(sock(limited), Submission("a@x.example", rcpts), MESSAGE)
    assert result.complete, result
    assert sorted(result.delivered) == sorted(rcpts)
    batches = [sorted(r) for r, _ in (messages_for(limited, rcpt)[0] for rcpt in rcpts)]
    assert sorted(map(tuple, batches)) == [
        ("split0@r.example", "split1@r.example"),
        ("split0@r.example", "split1@r.example"),
        ("split2@r.example", "split3@r.example"),
        ("split2@r.example", "split3@r.example"),
        ("split4@r.example", "split5@r.example"),
        ("split4@r.example", "split5@r.example"),
        ("split6@r.example",),
    ]
    # 4 transactions, 2 per session (max-mails 2)
    assert limited.log().count("smtp message msgid=") == 4
    assert limited.log().count("smtp connected") == 2


async def test_no_socket_is_unreachable(tmp_path: Path) -> None:
    result = await submit(str(tmp_path / "none.sock"), Submission("", ("x@r.example",)), MESSAGE)
    assert result.unreachable and result.stage is Stage.CONNECT
    assert result.pending == ("x@r.example",)
    assert result.exit_code == os.EX_TEMPFAIL
    assert "cannot connect" in result.problem


async def test_no_recipients_is_a_no_op(tmp_path: Path) -> None:
    result = await submit(str(tmp_path / "none.sock"), Submission("", ()), MESSAGE)
    assert result == SubmitResult()


# -- scripted servers: what a broken or departing daemon does ------------------------------

Script = Callable[[trio.SocketStream], Awaitable[None]]


async def serve_once(path: str, script: Script, task_status: trio.TaskStatus[None]) -> None:
    with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM) as listener:
        await listener.bind(path)
        listener.listen(1)
        task_status.started()
        conn, _ = await listener.accept()
        async with trio.SocketStream(conn) as stream:
            await script(stream)


class Lines:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            if not data:
                return b""
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def until_dot(self) -> None:
        while await self.line() != b".":
            pass


async def run_against(tmp_path: Path, script: Script, **kwargs: object) -> SubmitResult:
    path = str(tmp_path / "fake.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_once, path, script)
        result = await submit(
            path,
            Submission("a@x.example", ("one@r.example", "two@r.example")),
            MESSAGE,
            **kwargs,  # type: ignore[arg-type]
        )
        nursery.cancel_scope.cancel()
    return result


async def greet(stream: trio.SocketStream, lines: Lines) -> None:
    await stream.send_all(b"220 fake\r\n")
    assert (await lines.line()).startswith(b"EHLO ")
    await stream.send_all(b"250-fake\r\n250 SIZE 100\r\n")


async def test_421_at_banner_is_unreachable(tmp_path: Path) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(b"421 4.3.0 shutting down\r\n")

    result = await run_against(tmp_path, script)
    assert result.unreachable and result.pending == ("one@r.example", "two@r.example")
    assert "421" in result.problem


async def test_connection_lost_after_the_dot_keeps_everything_pending(tmp_path: Path) -> None:
    async def script(stream: trio.SocketStream) -> None:
        lines = Lines(stream)
        await greet(stream, lines)
        for _ in range(3):  # MAIL, RCPT, RCPT
            await lines.line()
            await stream.send_all(b"250 ok\r\n")
        assert await lines.line() == b"DATA"
        await stream.send_all(b"354 go\r\n")
        await lines.until_dot()  # then hang up without a reply

    result = await run_against(tmp_path, script)
    assert result.unreachable
    assert result.delivered == ()
    assert result.pending == ("one@r.example", "two@r.example")


async def test_garbage_is_a_protocol_error(tmp_path: Path) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(b"hello, I am not SMTP\r\n")

    result = await run_against(tmp_path, script)
    assert result.protocol_error and result.exit_code == os.EX_PROTOCOL


async def test_silence_times_out_as_unreachable(tmp_path: Path) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    result = await run_against(tmp_path, script, timeouts=ClientTimeouts().scaled(0.001))
    assert result.unreachable and "timed out" in result.problem


async def test_size_declared_and_temporary_failure_at_data_end(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def script(stream: trio.SocketStream) -> None:
        lines = Lines(stream)
        await greet(stream, lines)
        seen.append(await lines.line())
        await stream.send_all(b"250 ok\r\n")
        for _ in range(2):
            await lines.line()
            await stream.send_all(b"250 ok\r\n")
        await lines.line()
        await stream.send_all(b"354 go\r\n")
        await lines.until_dot()
        await stream.send_all(b"451 4.3.0 disk trouble\r\n")
        assert await lines.line() == b"QUIT"
        await stream.send_all(b"221 bye\r\n")

    result = await run_against(tmp_path, script)
    assert seen == [f"MAIL FROM:<a@x.example> SIZE={MESSAGE.size}".encode()]
    assert not result.unreachable
    assert result.stage is Stage.MESSAGE
    assert result.error == Reply(451, "4.3.0", ("disk trouble",))
    assert result.pending == ("one@r.example", "two@r.example")
    assert result.exit_code == os.EX_TEMPFAIL


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (SubmitResult(delivered=("a",)), os.EX_OK),
        (SubmitResult(pending=("a",), stage=Stage.RCPT, error=Reply.of(450, None)), 75),
        (SubmitResult(pending=("a",), stage=Stage.DATA, error=Reply.of(554, None)), 69),
        (SubmitResult(pending=("a",), stage=Stage.MAIL, error=Reply.of(550, None)), 69),
        (SubmitResult(pending=("a",), stage=Stage.MAIL, error=Reply.of(553, None)), 65),
        (SubmitResult(pending=("a",), stage=Stage.MAIL, error=Reply.of(552, None)), 65),
        (SubmitResult(pending=("a",), stage=Stage.MESSAGE, error=Reply.of(552, None)), 65),
        (SubmitResult(pending=("a",), stage=Stage.BANNER, error=Reply.of(554, None)), 69),
        (SubmitResult(refused=(("a", Reply.of(550, None)),), pending=("b",)), 67),
        (SubmitResult(pending=("a",), unreachable=True), 75),
        (SubmitResult(pending=("a",), protocol_error=True), 76),
    ],
)
def test_exit_codes(result: SubmitResult, code: int) -> None:
    assert result.exit_code == code
