"""Delivering to commands: exit statuses, signals, timeouts, environment, output."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import AsyncIterator

import pytest
import trio

from mta.delivery.mda import MdaCommand, mda_environment, run_mda, sysexit_text
from mta.delivery.result import Outcome
from mta.errors import CorruptMessage

MESSAGE = [b"Return-Path: <a@b.org>\n", b"Subject: hi\n\n", b"hello\n"]


def command(text: str, home: str = "/", **changes: object) -> MdaCommand:
    values: dict[str, object] = {
        "command": text,
        "username": "bob",
        "home": home,
        "sender": "alice@example.com",
        "original_recipient": "Bob+box@example.org",
        "recipient": "bob@example.org",
        "local": "Bob+box",
        "domain": "example.org",
        "extension": "box",
    }
    values.update(changes)
    return MdaCommand(**values)  # type: ignore[arg-type]


async def test_exit_zero_delivers_and_the_message_arrives(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "got"
    result = await run_mda(command(f"cat > {target}"), MESSAGE)
    assert result.outcome is Outcome.OK and result.text == "Delivered"
    assert target.read_bytes() == b"".join(MESSAGE)


@pytest.mark.parametrize(
    ("status", "outcome", "meaning"),
    [
        (67, Outcome.PERMFAIL, "user unknown"),
        (71, Outcome.TEMPFAIL, "system resource problem"),
        (75, Outcome.TEMPFAIL, "temporary failure"),
        (1, Outcome.PERMFAIL, None),
        (100, Outcome.PERMFAIL, None),
    ],
)
async def test_exit_statuses(status: int, outcome: Outcome, meaning: str | None) -> None:
    result = await run_mda(
        command(f"cat >/dev/null; echo 'no such box' >&2; exit {status}"), MESSAGE
    )
    assert result.outcome is outcome
    if meaning:
        assert result.text == f'Error ({meaning}: "no such box")'
    else:
        assert result.text == 'Error ("no such box")'
    assert sysexit_text(status) == meaning


async def test_a_killed_mda_is_a_temporary_failure() -> None:
    result = await run_mda(command("cat >/dev/null; kill -9 $$"), MESSAGE)
    assert result.outcome is Outcome.TEMPFAIL
    assert "signal 9" in result.text


async def test_a_command_that_stops_reading_early_is_retried() -> None:
    big = [b"x" * 65536] * 64  # more than a pipe holds
    result = await run_mda(command("head -c 10 >/dev/null; exit 0"), big)
    assert result.outcome is Outcome.TEMPFAIL
    assert result.text == "Error (mda exited prematurely)"


async def test_a_hanging_command_is_killed_at_the_time_limit() -> None:
    with trio.fail_after(10):
        result = await run_mda(command("sleep 30 & sleep 30"), MESSAGE, time_limit=0.5)
    assert result.outcome is Outcome.TEMPFAIL and "timeout" in result.text


async def test_environment_home_and_sub_address(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "env"
    result = await run_mda(
        command(f"cat >/dev/null; env > {target}; pwd >> {target}", home=str(tmp_path)), MESSAGE
    )
    assert result.outcome is Outcome.OK
    lines = target.read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines[:-1] if "=" in line)
    expected = mda_environment(command("x", home=str(tmp_path)))
    for key, value in expected.items():
        assert env[key] == value
    assert env["EXTENSION"] == "box" and env["SENDER"] == "alice@example.com"
    assert "MTA_DNS" not in env and "PYTHONPATH" not in env  # nothing of the daemon's
    assert lines[-1] == str(tmp_path)
    assert "EXTENSION" not in mda_environment(command("x", extension=""))


async def test_an_unrunnable_command_fails_cleanly() -> None:
    result = await run_mda(command("/nonexistent/mda"), MESSAGE)
    assert result.outcome is Outcome.PERMFAIL  # sh: not found, status 127
    assert "not found" in result.text


async def test_async_message_source(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "got"

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in MESSAGE:
            await trio.sleep(0)
            yield chunk

    result = await run_mda(command(f"cat > {target}"), chunks())
    assert result.outcome is Outcome.OK and target.read_bytes() == b"".join(MESSAGE)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
async def test_runs_as_the_delivery_user() -> None:
    shared = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))  # reachable by nobody
    try:
        shared.chmod(0o777)
        target = shared / "id"
        script = f"cat >/dev/null; id -u > {target}; id -G >> {target}"
        result = await run_mda(command(script, uid=65534, gid=65534), MESSAGE)
        assert result.outcome is Outcome.OK
        uid, groups = target.read_text().split("\n")[:2]
        assert uid == "65534" and groups.split() == ["65534"]
    finally:
        shutil.rmtree(shared)


async def test_a_message_that_cannot_be_read_to_its_end_kills_the_command(
    tmp_path: pathlib.Path,
) -> None:
    """The content fails its checksum half-way: the command must not see an end
    of input (it would deliver half a message), and the error reaches the caller."""
    target, done = tmp_path / "got", tmp_path / "done"

    async def damaged() -> AsyncIterator[bytes]:
        yield b"Subject: half\n\n"
        await trio.sleep(0.2)  # the command is reading by now
        raise CorruptMessage("message file: content checksum mismatch")

    with trio.fail_after(10), pytest.raises(CorruptMessage):
        await run_mda(command(f"cat > {target} && touch {done}"), damaged())
    await trio.sleep(0.5)  # time enough for a command left running to finish
    assert not done.exists()
