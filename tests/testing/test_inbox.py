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


def test_an_unbounded_inbox_keeps_everything() -> None:
    inbox = Inbox()
    for n in range(50):
        inbox.add(received(n))
    assert len(inbox.messages) == 50 and inbox.dropped == 0
    assert inbox.size == sum(len(received(n).raw) for n in range(50))


def test_a_bound_on_the_count_drops_the_oldest() -> None:
    inbox = Inbox(keep=3)
    for n in range(5):
        inbox.add(received(n))
    assert [m.id for m in inbox.messages] == ["2", "3", "4"]
    assert inbox.dropped == 2
    assert inbox.get("1") is None and inbox.get("2") is not None
    assert inbox.size == sum(len(received(n).raw) for n in (2, 3, 4))
    inbox.clear()
    assert (inbox.messages, inbox.dropped, inbox.size) == ([], 0, 0)
    inbox.add(received(9))
    assert [m.id for m in inbox.messages] == ["9"] and inbox.dropped == 0


def test_a_bound_on_the_bytes_drops_the_oldest() -> None:
    one = len(received(0).raw)  # each message below has the same size
    inbox = Inbox(max_bytes=3 * one + one // 2)
    for n in range(4):
        inbox.add(received(n))
    assert [m.id for m in inbox.messages] == ["1", "2", "3"]
    assert inbox.dropped == 1 and inbox.size == 3 * one
    big = ReceivedMessage("big", "a@example.test", ("b@example.test",), b"x" * 2 * one, NOW)
    inbox.add(big)  # two of the oldest make room for it
    assert [m.id for m in inbox.messages] == ["3", "big"]
    assert inbox.dropped == 3 and inbox.size == 3 * one
    huge = ReceivedMessage("huge", "a@example.test", ("b@example.test",), b"x" * 4 * one, NOW)
    inbox.add(huge)  # more than the whole bound: not kept either
    assert inbox.messages == [] and inbox.dropped == 6 and inbox.size == 0


def test_both_bounds_apply_together() -> None:
    one = len(received(0).raw)
    inbox = Inbox(keep=5, max_bytes=2 * one)
    for n in range(3):
        inbox.add(received(n))
    assert [m.id for m in inbox.messages] == ["1", "2"]
    inbox = Inbox(keep=2, max_bytes=100 * one)
    for n in range(3):
        inbox.add(received(n))
    assert [m.id for m in inbox.messages] == ["1", "2"]


@pytest.mark.parametrize("bound", [{"keep": 0}, {"max_bytes": 0}, {"keep": -1}])
def test_a_bound_below_one_is_refused(bound: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(**bound)


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
