"""The hot-path worker threads: results, errors, parallelism, cancellation, idle exit."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from mta import threads


async def test_result_and_arguments() -> None:
    assert await threads.run_sync(lambda: 42) == 42
    assert await threads.run_sync(divmod, 7, 2) == (3, 1)
    main = threading.get_ident()
    assert await threads.run_sync(threading.get_ident) != main


async def test_error_is_raised_in_the_caller() -> None:
    def fail() -> None:
        raise OSError(5, "disk says no")

    with pytest.raises(OSError, match="disk says no"):
        await threads.run_sync(fail)


async def test_calls_run_in_parallel_and_beyond_the_thread_limit() -> None:
    # more callers than threads: the extra jobs wait in the queue, none is lost
    barrier = threading.Barrier(8, timeout=10)
    results: list[int] = []

    async def call(n: int) -> None:
        def job() -> int:
            if n < 8:
                barrier.wait()  # only passes if 8 run at the same time
            return n

        results.append(await threads.run_sync(job))

    async with trio.open_nursery() as nursery:
        for n in range(threads.MAX_WORKERS * 2 + 5):
            nursery.start_soon(call, n)
    assert sorted(results) == list(range(threads.MAX_WORKERS * 2 + 5))


async def test_a_cancelled_caller_waits_for_its_thread() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    started = threading.Event()
    with trio.CancelScope() as scope:
        scope.cancel()
        await threads.run_sync(started.set)  # cancelled before it starts: never submitted
    assert scope.cancelled_caught
    await trio.sleep(0.05)
    assert not started.is_set()

    with trio.move_on_after(0.01) as scope:
        await threads.run_sync(slow)
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert finished.is_set()  # the call returned only once the thread was done


async def test_idle_workers_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.05)
    workers = threads._Workers()
    monkeypatch.setattr(threads, "_WORKERS", workers)
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(threads.run_sync, time.sleep, 0.05)
    assert workers._threads >= 1
    deadline = time.monotonic() + 5
    while workers._threads and time.monotonic() < deadline:
        await trio.sleep(0.02)
    assert workers._threads == 0
    assert await threads.run_sync(lambda: "again") == "again"  # a new thread starts
