"""The hot-path worker threads: results, errors, parallelism, cancellation, idle exit,
the jobs that go ahead of the queue, and the context each job runs in."""

from __future__ import annotations

import contextvars
import os
import signal
import threading
import time

import pytest
import trio
import trio.testing

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


OWNER: contextvars.ContextVar[str] = contextvars.ContextVar("owner", default="nobody")


async def test_a_job_runs_in_its_callers_context() -> None:
    # several tasks at once, each with its own value, both kinds of job: each
    # job sees its own task's value, and what a job sets stays in the job
    barrier = threading.Barrier(6, timeout=10)
    seen: dict[str, list[str]] = {}

    def job(name: str) -> str:
        barrier.wait()  # all six in their threads at the same time
        found = OWNER.get()
        OWNER.set("the job")
        return found

    async def call(name: str) -> None:
        OWNER.set(name)
        seen[name] = [
            await threads.run_sync(job, name),
            await threads.run_sync_first(job, name),
            OWNER.get(),
        ]

    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c", "d", "e", "f"):
            nursery.start_soon(call, name)
    assert seen == {name: [name, name, name] for name in "abcdef"}
    assert OWNER.get() == "nobody"


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
        for n in range(4):
            call = threads.run_sync_first if n % 2 else threads.run_sync
            nursery.start_soon(call, time.sleep, 0.05)
    assert workers._threads >= 1
    deadline = time.monotonic() + 5
    while workers._threads and time.monotonic() < deadline:
        await trio.sleep(0.02)
    assert workers._threads == 0
    assert await threads.run_sync(lambda: "again") == "again"  # a new thread starts


async def test_a_first_job_goes_ahead_of_the_jobs_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "MAX_WORKERS", 1)
    monkeypatch.setattr(threads, "_WORKERS", threads._Workers())
    running, gate = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        running.set()
        gate.wait(10)

    async def call(name: str, first: bool) -> None:
        run = threads.run_sync_first if first else threads.run_sync
        await run(order.append, name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(threads.run_sync, hold)  # holds the only worker
        with trio.fail_after(10):
            while not running.is_set():
                await trio.sleep(0.001)
        for name, first in (("a", False), ("b", False), ("first", True), ("c", False)):
            nursery.start_soon(call, name, first)
            await trio.testing.wait_all_tasks_blocked()  # submitted, in this order
        assert order == []
        gate.set()
    assert order == ["first", "a", "b", "c"]


async def test_first_jobs_run_in_parallel_and_none_is_lost() -> None:
    barrier = threading.Barrier(4, timeout=10)
    count = threads.MAX_WORKERS * 2 + 5

    def job(n: int) -> int:
        if n < 4:
            barrier.wait()  # only passes if 4 first jobs run at the same time
        if n == count - 1:
            raise OSError(5, "disk says no")
        return n

    results: list[int] = []

    async def call(n: int) -> None:
        run = threads.run_sync_first if n < 4 or n % 2 else threads.run_sync
        try:
            results.append(await run(job, n))
        except OSError:
            results.append(-1)

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(call, n)
    assert sorted(results) == [-1, *range(count - 1)]


def test_a_forked_child_gets_workers_of_its_own() -> None:
    # the parent's workers stay in the parent: a child that forked after they
    # ran (a test suite forking after an in-process server) starts its own
    assert trio.run(threads.run_sync, lambda: 1) == 1
    pid = os.fork()
    if pid == 0:  # the child: a job must run (exit 0), not wait for a lost worker
        signal.alarm(10)  # a hang ends the child (SIGALRM: status not 0)
        ok = trio.run(threads.run_sync, lambda: 42) == 42
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
