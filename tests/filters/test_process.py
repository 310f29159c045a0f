"""The filter process driver against small filter programs written here:
registration, requests of several sessions at once, data-line, stderr to the
log, and every way a filter can fail (exit, garbage, silence)."""

from __future__ import annotations

import getpass
import logging
import shlex
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
import trio

from mta.config.model import Proc
from mta.filters.datalines import DataLinePipe
from mta.filters.encode import Handshake
from mta.filters.process import POST_BUFFER, FilterFailed, FilterProcess, command_argv
from mta.filters.protocol import Decision, FilterPhase, Subsystem

HANDSHAKE = Handshake(subsystems=frozenset({Subsystem.SMTP_IN}), admd="mx.test")

PRELUDE = """
import sys
out = sys.stdout
def send(line):
    out.write(line + "\\n"); out.flush()
for line in sys.stdin:
    if line.strip() == "config|ready":
        break
"""


def program(tmp_path: Path, body: str, name: str = "f.py") -> Proc:
    path = tmp_path / name
    path.write_text(PRELUDE + textwrap.dedent(body))
    # as the test's own user: run by root, a filter naming no user runs as nobody,
    # who cannot reach this Python or the test's directory
    return Proc(
        name="f",
        command=f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}",
        user=getpass.getuser(),
    )


REJECTING = """
send("register|filter|smtp-in|mail-from")
send("register|filter|smtp-in|data-line")
send("register|report|smtp-in|*")
send("register|ready")
for line in sys.stdin:
    f = line.rstrip("\\n").split("|")
    if f[0] != "filter":
        continue
    session, token = f[5], f[6]
    if f[4] == "mail-from":
        if f[7] == "spam@bad.test":
            send(f"filter-result|{session}|{token}|reject|550 go away")
        else:
            send(f"filter-result|{session}|{token}|proceed")
    elif f[4] == "data-line":
        data = "|".join(f[7:])
        if data == "Subject: x":
            send(f"filter-dataline|{session}|{token}|X-Filtered: yes")
        send(f"filter-dataline|{session}|{token}|{data}")
    print("seen", f[4], file=sys.stderr, flush=True)
"""


async def test_requests_of_several_sessions_and_data_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    process = FilterProcess("f", program(tmp_path, REJECTING), HANDSHAKE, timeout=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(process.run)
        assert process.registered is not None
        assert process.wants(FilterPhase.MAIL_FROM) and not process.wants(FilterPhase.RCPT_TO)
        results: dict[int, Decision] = {}

        async def ask(session: int, sender: str) -> None:
            result = await process.request(FilterPhase.MAIL_FROM, session, sender)
            assert result.session == session
            results[session] = result.decision

        async with trio.open_nursery() as sessions:
            for session in range(1, 21):
                sessions.start_soon(ask, session, "spam@bad.test" if session % 2 else "a@ok.test")
        assert results == {s: Decision.REJECT if s % 2 else Decision.PROCEED for s in range(1, 21)}

        lines = process.open_data(7)
        for line in (b"Subject: x", b"", b"body|with|pipes", b"."):
            await process.data_line(7, 99, line)
        got: list[bytes | None] = []
        async for batch in lines:
            got.extend(batch)
            if None in batch:
                break
        assert got == [b"X-Filtered: yes", b"Subject: x", b"", b"body|with|pipes", None]
        process.close_data(7)
        nursery.cancel_scope.cancel()
    assert "filter f: seen mail-from" in caplog.text


async def test_a_message_through_a_data_line_pipe_one_write_per_chunk(tmp_path: Path) -> None:
    """Content in chunks cut anywhere (inside a line, inside its CRLF) reaches the
    sink whole, dot-escaped on the way and unescaped back; each chunk's whole
    lines go to the filter in one write, and the end in one more."""
    process = FilterProcess("f", program(tmp_path, REJECTING), HANDSHAKE, timeout=10)
    content = b"Subject: x\r\n\r\nbody|with|pipes\r\n.dotted\r\n..two\r\nlast"
    chunks = [content[:5], content[5:11], content[11:12], content[12:30], content[30:]]
    out: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(process.run)
        writes: list[bytes] = []
        send = process._send

        async def counted(data: bytes) -> None:
            writes.append(data)
            await send(data)

        process._send = counted  # type: ignore[method-assign]
        pipe = DataLinePipe(7, [process], out.append)
        await pipe.start(nursery)
        for chunk in chunks:
            await pipe.feed(chunk)
        await pipe.finish()
        nursery.cancel_scope.cancel()
    assert b"".join(out) == b"X-Filtered: yes\r\n" + content + b"\r\n"
    # the first two chunks end no line: nothing is written for them
    assert [w.count(b"\n") for w in writes] == [1, 1, 3, 2]
    assert b"|body|with|pipes\n" in writes[2]
    assert b"|..dotted\n" in writes[2] and b"|...two\n" in writes[2]
    assert writes[3].endswith(b"|.\n") and b"|last\n" in writes[3]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("sys.exit(3)\n", "exited with status 3"),
        ('send("register|filter|smtp-in|nonsense")\n', "nonsense"),
        ('send("hello there")\n', "hello there"),
    ],
)
async def test_a_filter_that_never_registers_fails_to_start(
    tmp_path: Path, body: str, reason: str
) -> None:
    process = FilterProcess("f", program(tmp_path, body), HANDSHAKE, timeout=10)
    with pytest.RaisesGroup(pytest.RaisesExc(FilterFailed, match=reason)):
        async with trio.open_nursery() as nursery:
            await nursery.start(process.run)
    assert not process.alive


async def test_a_command_that_cannot_run(tmp_path: Path) -> None:
    proc = Proc(name="f", command=str(tmp_path / "missing-filter"), user=getpass.getuser())
    process = FilterProcess("f", proc, HANDSHAKE, timeout=10)
    with pytest.RaisesGroup(pytest.RaisesExc(FilterFailed, match="exited with status 127")):
        async with trio.open_nursery() as nursery:
            await nursery.start(process.run)


MISBEHAVING = """
send("register|filter|smtp-in|mail-from")
send("register|ready")
import time
for line in sys.stdin:
    f = line.rstrip("\\n").split("|")
    if f[0] != "filter":
        continue
    if f[7] == "crash@x.test":
        sys.exit(1)
    if f[7] == "garbage@x.test":
        send("filter-result|not-a-session|x|proceed")
    if f[7] == "hang@x.test":
        time.sleep(60)
    send(f"filter-result|{f[5]}|{f[6]}|proceed")
"""


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("crash@x.test", "exited with status 1"),
        ("garbage@x.test", "not-a-session"),
        ("hang@x.test", "no answer to mail-from within 0.5s"),
    ],
)
async def test_misbehaviour_fails_the_waiting_requests(
    tmp_path: Path, sender: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    process = FilterProcess("f", program(tmp_path, MISBEHAVING), HANDSHAKE, timeout=0.5)
    failures: list[FilterFailed] = []
    with pytest.RaisesGroup(pytest.RaisesExc(FilterFailed, match=reason)):
        async with trio.open_nursery() as nursery:
            await nursery.start(process.run)
            ok = await process.request(FilterPhase.MAIL_FROM, 1, "fine@x.test")
            assert ok.decision is Decision.PROCEED

            async def waiting() -> None:
                try:
                    await process.request(FilterPhase.MAIL_FROM, 2, sender)
                except FilterFailed as exc:
                    failures.append(exc)

            nursery.start_soon(waiting)
    assert len(failures) == 1 and reason in str(failures[0])
    assert f"filter f: {reason}" in caplog.text or reason in caplog.text
    with pytest.raises(FilterFailed):
        await process.request(FilterPhase.MAIL_FROM, 3, "after@x.test")


def test_relative_commands_are_found_in_the_helper_directories(tmp_path: Path) -> None:
    helper = tmp_path / "filter-demo"
    helper.write_text("#!/bin/sh\n")
    helper.chmod(0o755)
    proc = Proc(name="d", command="filter-demo -d example.org -s 'a b'")
    assert command_argv(proc, dirs=(str(tmp_path),)) == [
        "/bin/sh",
        "-c",
        f"{helper} -d example.org -s 'a b'",
    ]
    assert command_argv(Proc(name="d", command="other -x"), dirs=(str(tmp_path),)) == [
        "/bin/sh",
        "-c",
        "other -x",
    ]
    assert command_argv(Proc(name="d", command="/abs/filter"))[2] == "/abs/filter"


ECHOING = """
send("register|report|smtp-out|*")
send("register|ready")
log = open(sys.argv[1], "a")
for line in sys.stdin:
    log.write(line); log.flush()
"""

STALLED = """
import time
send("register|ready")
time.sleep(60)
"""


async def test_posted_lines_are_written_in_order_without_waiting(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    proc = program(tmp_path, ECHOING)
    proc = attrs.evolve(proc, command=f"{proc.command} {shlex.quote(str(seen))}")
    process = FilterProcess("f", proc, HANDSHAKE, timeout=10)
    lines = [f"report|0.7|1.000000|smtp-out|tx-reset|{n:016x}\n".encode() for n in range(100)]
    assert not process.post(lines[0])  # not running yet
    async with trio.open_nursery() as nursery:
        await nursery.start(process.run)
        assert all(process.post(line) for line in lines)
        with trio.fail_after(10):
            while len(seen.read_bytes() if seen.exists() else b"") < len(b"".join(lines)):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert seen.read_bytes() == b"".join(lines)
    assert not process.post(lines[0])  # stopped


async def test_a_filter_that_stops_reading_loses_what_does_not_fit(tmp_path: Path) -> None:
    process = FilterProcess("f", program(tmp_path, STALLED), HANDSHAKE, timeout=10)
    line = b"report|0.7|1.000000|smtp-out|protocol-client|0000000000000001|" + b"x" * 1000 + b"\n"
    async with trio.open_nursery() as nursery:
        await nursery.start(process.run)
        with trio.fail_after(10):  # never blocks: the pipe fills, then the queue
            taken = 0
            while process.post(line):
                taken += 1
                await trio.sleep(0)
        assert POST_BUFFER <= taken < POST_BUFFER + 1000  # the queue and what the pipe held
        assert process.alive
        nursery.cancel_scope.cancel()
