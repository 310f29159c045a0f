"""The inbox of an in-process server: thread-safe reads, waits and change notices."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
import trio

from mta.testing import Inbox, ReceivedMessage

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


def received(n: int, to: str = "bob@example.test", subject: str = "hello") -> ReceivedMessage:
    raw = f"Subject: {subject} {n}\r\nFrom: a@example.test\r\n\r\nbody {n}\r\n".encode()
    return ReceivedMessage(str(n), "a@example.test", (to,), raw, NOW)


def test_messages_are_kept_oldest_first_and_parsed() -> None:
    inbox = Inbox()
    inbox.add(received(1))
    inbox.add(received(2, to="carol@example.test"))
    assert [m.id for m in inbox.messages] == ["1", "2"]
    assert inbox.messages[1].message["Subject"] == "hello 2"
    assert inbox.messages[1].message.get_content() == "body 2\n"
    assert inbox.get("2") is inbox.messages[1] and inbox.get("3") is None
    version = inbox.version
    inbox.clear()
    assert inbox.messages == [] and inbox.version != version


def test_wait_returns_what_matches_as_it_arrives() -> None:
    inbox = Inbox()
    inbox.add(received(1, to="other@example.test"))
    later = threading.Timer(0.05, lambda: inbox.add(received(2, subject="welcome")))
    later.start()
    started = time.monotonic()
    got = inbox.wait(to="BOB@example.test", subject="welcome", timeout=5)
    assert got.id == "2" and time.monotonic() - started < 4
    inbox.add(received(3))
    assert [m.id for m in inbox.wait(to="bob@example.test", count=2)] == ["2", "3"]


def test_wait_names_what_arrived_instead() -> None:
    inbox = Inbox()
    inbox.add(received(1, to="other@example.test", subject="oops"))
    with pytest.raises(TimeoutError, match=r"to bob@example\.test.*other@example\.test.*oops 1"):
        inbox.wait(to="bob@example.test", timeout=0.05)
    with pytest.raises(ValueError):
        inbox.wait(count=0)


async def test_a_trio_task_hears_of_changes() -> None:
    inbox = Inbox()
    seen = inbox.version
    assert await inbox.changed(seen - 1) == seen  # already past: at once
    async with trio.open_nursery() as nursery:
        versions: list[int] = []

        async def watch() -> None:
            versions.append(await inbox.changed(seen))

        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(inbox.add, received(1))
    assert versions == [inbox.version]
    with trio.move_on_after(0.01):
        await inbox.changed(inbox.version)  # cancelled: forgets its watcher
    assert inbox._watchers == []
