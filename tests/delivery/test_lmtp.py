"""LMTP delivery against scripted servers on loopback and on a Unix socket."""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

from mta.delivery.lmtp import deliver_lmtp, parse_destination
from mta.delivery.result import Outcome
from tests.dovecot import DOVECOT, Dovecot, dovecot_server

MESSAGE = [b"Subject: hi\r\n\r\n", b".leading dot\r\n", b"end\r\n"]
Script = Callable[[trio.SocketStream, list[bytes]], Awaitable[None]]


async def read_line(stream: trio.abc.Stream, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        data = await stream.receive_some(4096)
        if not data:
            raise EOFError
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line + b"\n"


def server(replies: dict[str, bytes], *, after_data: bytes = b"250 2.0.0 Ok\r\n") -> Script:
    """A server that answers each command by its verb, then the data."""

    async def run(stream: trio.SocketStream, seen: list[bytes]) -> None:
        buffer = bytearray()
        await stream.send_all(replies.get("greeting", b"220 lmtp ready\r\n"))
        while True:
            line = await read_line(stream, buffer)
            seen.append(line)
            verb = line.split(b" ")[0].split(b":")[0].strip().upper().decode()
            if verb == "DATA":
                await stream.send_all(replies.get("DATA", b"354 go\r\n"))
                if not replies.get("DATA", b"354").startswith(b"354"):
                    continue
                while True:
                    data_line = await read_line(stream, buffer)
                    seen.append(data_line)
                    if data_line == b".\r\n":
                        break
                await stream.send_all(after_data)
                continue
            if verb == "QUIT":
                await stream.send_all(b"221 bye\r\n")
                return
            await stream.send_all(replies.get(verb, b"250 ok\r\n"))

    return run


async def run_against(script: Script, **kwargs: object) -> tuple[object, list[bytes]]:
    seen: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        with contextlib.suppress(EOFError, trio.BrokenResourceError):
            await script(stream, seen)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        args: dict[str, object] = {
            "lhlo": "mx.example.net",
            "sender": "alice@example.com",
            "rcpt": "bob",
            "chunks": MESSAGE,
        }
        args.update(kwargs)
        result = await deliver_lmtp(f"127.0.0.1:{port}", **args)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    return result, seen


async def test_a_delivery_and_what_the_server_sees() -> None:
    result, seen = await run_against(server({}))
    assert result.outcome is Outcome.OK  # type: ignore[attr-defined]
    assert seen[:4] == [
        b"LHLO mx.example.net\r\n",
        b"MAIL FROM:<alice@example.com>\r\n",
        b"RCPT TO:<bob>\r\n",
        b"DATA\r\n",
    ]
    assert b"".join(seen[4:7]) == b"Subject: hi\r\n\r\n..leading dot\r\n"
    assert seen[7:] == [b"end\r\n", b".\r\n", b"QUIT\r\n"]


@pytest.mark.parametrize(
    ("replies", "after", "outcome", "status"),
    [
        ({"RCPT": b"550 5.1.1 no such user\r\n"}, b"", Outcome.PERMFAIL, "5.1.1"),
        ({"RCPT": b"452 4.2.2 over quota\r\n"}, b"", Outcome.TEMPFAIL, "4.2.2"),
        ({"MAIL": b"421 shutting down\r\n"}, b"", Outcome.TEMPFAIL, "4.3.0"),
        ({"greeting": b"554 go away\r\n"}, b"", Outcome.PERMFAIL, "5.3.0"),
        ({}, b"552 5.2.2 mailbox full\r\n", Outcome.PERMFAIL, "5.2.2"),
        ({}, b"451 4.3.0 try later\r\n", Outcome.TEMPFAIL, "4.3.0"),
        ({}, b"550 5.7.350 detected as spam\r\n", Outcome.PERMFAIL, "5.7.350"),
        ({"RCPT": b"451 4.7.28 rate limited\r\n"}, b"", Outcome.TEMPFAIL, "4.7.28"),
        ({}, b"550 5.7.3500 not a code\r\n", Outcome.PERMFAIL, "5.3.0"),
    ],
)
async def test_replies_decide_the_outcome(
    replies: dict[str, bytes], after: bytes, outcome: Outcome, status: str
) -> None:
    result, _seen = await run_against(server(replies, after_data=after or b"250 ok\r\n"))
    assert result.outcome is outcome  # type: ignore[attr-defined]
    assert result.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad",
    [
        b"250-first\r\n251 second\r\n",  # mixed codes
        b"25 short\r\n",
        b"250" + b"x" * 600 + b"\r\n",  # too long
        b"hello\r\n",
        b"250-more\r\n" * 200,  # too many lines
        b"999 odd\r\n",
    ],
)
async def test_malformed_replies_are_temporary_failures(bad: bytes) -> None:
    result, _seen = await run_against(server({"LHLO": bad}))
    assert result.outcome is Outcome.TEMPFAIL  # type: ignore[attr-defined]


async def test_a_connection_dropped_mid_data_or_a_stalled_server() -> None:
    async def drop(stream: trio.SocketStream, seen: list[bytes]) -> None:
        buffer = bytearray()
        await stream.send_all(b"220 hi\r\n")
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            seen.append(await read_line(stream, buffer))
            await stream.send_all(reply)
        await stream.aclose()

    result, _ = await run_against(drop)
    assert result.outcome is Outcome.TEMPFAIL  # type: ignore[attr-defined]

    async def stall(stream: trio.SocketStream, seen: list[bytes]) -> None:
        await trio.sleep_forever()

    with trio.fail_after(10):
        result, _ = await run_against(stall, timeout=0.3)
    assert result.outcome is Outcome.TEMPFAIL and "timed out" in result.text  # type: ignore[attr-defined]


async def test_unix_socket_and_a_refused_connection(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "lmtp.sock")
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(5)
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            conn, _ = await sock.accept()
            async with trio.SocketStream(conn) as stream:
                with contextlib.suppress(EOFError, trio.BrokenResourceError):
                    await server({})(stream, seen)

        nursery.start_soon(serve)
        result = await deliver_lmtp(
            path, lhlo="h", sender="", rcpt="bob@example.org", chunks=MESSAGE
        )
    sock.close()
    assert result.outcome is Outcome.OK
    assert b"MAIL FROM:<>\r\n" in seen and b"RCPT TO:<bob@example.org>\r\n" in seen
    refused = await deliver_lmtp(path, lhlo="h", sender="", rcpt="x", chunks=MESSAGE)
    assert refused.outcome is Outcome.TEMPFAIL and "cannot connect" in refused.text


def test_destinations() -> None:
    assert parse_destination("/var/run/dovecot/lmtp") == "/var/run/dovecot/lmtp"
    assert parse_destination("localhost:24") == ("localhost", 24)
    assert parse_destination("localhost") == ("localhost", 25)
    assert parse_destination("[::1]:24") == ("::1", 24)
    assert parse_destination("::1") == ("::1", 25)
    for bad in ("host:", "host:99999", "[::1", ":24", "[::1]x"):
        with pytest.raises(ValueError):
            parse_destination(bad)


async def test_dot_stuffing_across_chunk_boundaries() -> None:
    chunks = [b".a\r", b"\n.", b"b\r\n", b"c\r\n", b"..d"]
    result, seen = await run_against(server({}), chunks=chunks)
    assert result.outcome is Outcome.OK  # type: ignore[attr-defined]
    data = seen[seen.index(b"DATA\r\n") + 1 : seen.index(b"QUIT\r\n")]
    assert b"".join(data) == b"..a\r\n..b\r\nc\r\n...d\r\n.\r\n"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot-lmtpd is not installed (scripts/setup --test installs it)")
    with dovecot_server(["bob", "carol"]) as server:
        yield server


async def test_a_real_lmtp_server_over_tcp_and_unix(dovecot: Dovecot) -> None:
    for destination, user in ((f"127.0.0.1:{dovecot.port}", "bob"), (dovecot.socket, "carol")):
        result = await deliver_lmtp(
            destination,
            lhlo="mx.example.net",
            sender="alice@example.com",
            rcpt=user,
            chunks=[b"Subject: real\r\n\r\n", b".dot line\r\n"],
        )
        assert result.outcome is Outcome.OK, result
        [message] = list(dovecot.maildir(user))
        assert message["Subject"] == "real"
        assert message.get_payload() == ".dot line\n"


async def test_a_real_lmtp_server_refuses_an_unknown_user(dovecot: Dovecot) -> None:
    result = await deliver_lmtp(
        f"127.0.0.1:{dovecot.port}",
        lhlo="h",
        sender="alice@example.com",
        rcpt="nobody-here",
        chunks=MESSAGE,
    )
    assert result.outcome is Outcome.PERMFAIL and result.status.startswith("5.1.")
