"""The daemon re-submits the offline drop through its local socket, losing nothing."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mta.enqueue.compose import Content
from mta.enqueue.offline import OfflineEnvelope, is_offline_name, read_offline, write_offline
from mta.server.offline import run_offline_scan
from mta.server.resubmit import Resubmitted, resubmit_file
from tests.e2e.daemon import Daemon
from tests.enqueue.daemons import queued, running

MESSAGE = (
    b"From: <a@x.example>\r\nDate: Sun, 5 Jan 2025 12:34:56 +0100\r\nMessage-ID: <m@x.example>\r\n"
    b"Subject: offline\r\n\r\n.dot\r\nbody\r\n"
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("offline")) as d:
        yield d


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """An offline directory of its own for each test (the daemon's socket is shared)."""
    path = tmp_path / "spool" / "offline"
    path.mkdir(parents=True)
    return path


def sock(d: Daemon) -> str:
    return str(d.spool / "enqueue.sock")


def keep(directory: Path, *recipients: str, sender: str = "a@x.example") -> Path:
    envelope = OfflineEnvelope(
        sender=sender, recipients=recipients, uid=os.getuid(), created=int(time.time())
    )
    return Path(write_offline(str(directory), envelope, Content(MESSAGE)))


def messages_for(d: Daemon, rcpt: str) -> list[tuple[list[str], str, bytes]]:
    return [
        ([str(e.rcpt) for e in envs], str(envs[0].sender), content)
        for envs, content in queued(d)
        if any(str(e.rcpt) == rcpt for e in envs)
    ]


def offline_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_scan_submits_and_removes(
    daemon: Daemon, drop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = keep(drop, "o1@r.example", "o2@r.example")
    second = keep(drop, "o3@r.example", sender="")
    caplog.set_level(logging.INFO, logger="mta")
    await run_offline_scan(str(drop.parent), sock(daemon), delay=0, settle=None)
    assert offline_names(drop) == []
    [(rcpts, sender, content)] = messages_for(daemon, "o1@r.example")
    assert rcpts == ["o1@r.example", "o2@r.example"]
    assert sender == "a@x.example"
    assert content.endswith(b"\r\n" + MESSAGE)
    assert content.startswith(b"Received: from localhost ")
    [(_, sender, _)] = messages_for(daemon, "o3@r.example")
    assert sender == ""
    assert f"offline: enqueued {first.name}" in caplog.text
    assert f"offline: enqueued {second.name}" in caplog.text
    assert "scan done, 2 enqueued, 0 partly, 0 kept" in caplog.text


async def test_refused_recipients_stay_in_the_file(
    daemon: Daemon, drop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = keep(drop, "o4@r.example", "nobody@localhost")
    outcome = await resubmit_file(str(drop), path.name, sock(daemon))
    assert outcome is Resubmitted.NARROWED
    assert len(messages_for(daemon, "o4@r.example")) == 1
    assert offline_names(drop) == [path.name]
    with path.open("rb") as f:
        checked = read_offline(f)
        assert checked.envelope.recipients == ("nobody@localhost",)
        assert checked.content(f).read_all() == MESSAGE
    assert "to=<nobody@localhost> refused: 550" in caplog.text


async def test_all_refused_is_kept_unchanged(daemon: Daemon, drop: Path) -> None:
    path = keep(drop, "nobody@localhost")
    before = path.read_bytes()
    assert await resubmit_file(str(drop), path.name, sock(daemon)) is Resubmitted.KEPT
    assert path.read_bytes() == before


async def test_daemon_not_answering_keeps_files(tmp_path: Path, drop: Path) -> None:
    path = keep(drop, "o5@r.example")
    before = path.read_bytes()
    await run_offline_scan(str(drop.parent), str(tmp_path / "absent.sock"), delay=0, settle=None)
    assert offline_names(drop) == [path.name]
    assert path.read_bytes() == before


async def test_bad_files_are_kept_and_others_still_sent(
    daemon: Daemon, drop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = keep(drop, "o6@r.example")
    corrupt = drop / "1000000000.0123456789abcdef"
    corrupt.write_bytes(b"mta-offline 1\ncreated 1\nuid 1\n")  # truncated
    linked = keep(drop, "o7@r.example")
    os.link(linked, drop.parent / "second-link")
    symlink = drop / "1000000001.0123456789abcdef"
    symlink.symlink_to(good)
    foreign = drop / "notes.txt"
    foreign.write_text("not mail")
    temporary = drop / ".1000000002.0123456789abcdef.tmp"
    temporary.write_bytes(b"being written")
    await run_offline_scan(str(drop.parent), sock(daemon), delay=0, settle=None)
    assert offline_names(drop) == sorted(
        [corrupt.name, linked.name, symlink.name, foreign.name, temporary.name]
    )
    assert len(messages_for(daemon, "o6@r.example")) == 1  # via its own name only
    assert messages_for(daemon, "o7@r.example") == []
    assert "truncated; kept" in caplog.text
    assert "has several links; kept" in caplog.text
    assert f"{symlink.name}: cannot open" in caplog.text
    assert "notes.txt: not an offline message; left alone" in caplog.text


async def test_scan_waits_for_the_delay(daemon: Daemon, drop: Path) -> None:
    keep(drop, "o8@r.example")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_offline_scan(str(drop.parent), sock(daemon), delay=0.5, settle=None)
        )
        await trio.sleep(0.3)
        assert len(offline_names(drop)) == 1
    assert offline_names(drop) == []
    assert len(messages_for(daemon, "o8@r.example")) == 1


async def test_missing_offline_directory(daemon: Daemon, tmp_path: Path) -> None:
    await run_offline_scan(str(tmp_path / "no-spool"), sock(daemon), delay=0)  # returns at once


async def test_second_pass_takes_late_files_only(
    daemon: Daemon, drop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refused = keep(drop, "nobody@localhost")  # kept by the first pass
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_offline_scan(str(drop.parent), sock(daemon), delay=0, settle=0.5)
        )
        await trio.sleep(0.25)
        late = keep(drop, "o9@r.example")  # written after the first pass listed the directory
        assert offline_names(drop) == sorted([refused.name, late.name])
    assert offline_names(drop) == [refused.name]
    assert len(messages_for(daemon, "o9@r.example")) == 1
    assert caplog.text.count(f"offline: {refused.name}") == 2  # refused once, kept once: one pass


def test_written_names_are_offline_names(drop: Path) -> None:
    assert is_offline_name(keep(drop, "x@r.example").name)
