"""Tests for mta.spool.fanout: a batch's calls run side by side, and what each
raised comes back in order."""

from __future__ import annotations

import os
import threading

import pytest

from mta.spool import fanout
from mta.spool.fanout import run_all


def test_no_calls_no_threads() -> None:
    assert run_all([]) == []


def test_a_single_call_runs_in_the_callers_thread() -> None:
    seen: list[int] = []
    assert run_all([lambda: seen.append(threading.get_ident())]) == [None]
    assert seen == [threading.get_ident()]


def test_the_calls_run_at_the_same_time() -> None:
    count = 12
    # every call waits for all the others: one after the other, none would pass
    barrier = threading.Barrier(count, timeout=10)
    threads: set[int] = set()

    def call() -> None:
        threads.add(threading.get_ident())
        barrier.wait()

    assert run_all([call] * count) == [None] * count
    assert len(threads) == count


def test_what_each_raised_comes_back_in_order() -> None:
    boom = OSError(5, "Input/output error")

    def fails() -> None:
        raise boom

    def ok() -> None:
        pass

    outcomes = run_all([fails, ok, fails, ok])
    assert outcomes == [boom, None, boom, None]


def test_more_calls_than_threads() -> None:
    done: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        with lock:
            done.append(n)

    calls = [lambda n=n: call(n) for n in range(fanout.MAX_THREADS * 3)]
    assert run_all(calls) == [None] * len(calls)
    assert sorted(done) == list(range(len(calls)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_threads_of_its_own() -> None:
    run_all([lambda: None, lambda: None])  # the parent's threads exist
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are gone, new ones must start
        ok = False
        try:
            ok = run_all([lambda: None] * 4) == [None] * 4
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
