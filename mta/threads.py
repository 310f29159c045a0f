"""Blocking calls in worker threads for the hot paths (spool commits, lookups).

:func:`run_sync` does what ``trio.to_thread.run_sync`` does with its defaults
(the call cannot be abandoned: a cancelled caller waits for the thread, then
sees the cancellation at its next checkpoint) at about half the cost per call:
a fixed set of long-lived workers takes jobs from one queue and hands each
result back with a single ``run_sync_soon``.  No capacity limiter object, no
thread renaming.  Like ``trio.to_thread``, a job runs in a copy of the
submitting task's context (``contextvars.copy_context()`` shares the
task's mapping, so it costs the same whatever the context holds): what a
job logs reaches the same place as what its task logs (an in-process test
server's lines, :mod:`mta.testing.logs`).  At most :data:`MAX_WORKERS`
threads run; further jobs wait in the queue.  Idle workers exit after
:data:`IDLE_SECONDS`.

:func:`run_sync_first` is the same call for a job that must not wait behind
new work (the record of a finished delivery: until it is done, a crash would
repeat the delivery): it goes ahead of every job waiting in the queue.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple, Unpack

import outcome
import trio

__all__ = ["IDLE_SECONDS", "MAX_WORKERS", "run_sync", "run_sync_first"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MAX_WORKERS = 40  # trio.to_thread's default limit
IDLE_SECONDS = 10.0

# the callable, the context it runs in, and where its outcome goes
_Job = tuple[Callable[[], Any], contextvars.Context, trio.lowlevel.TrioToken, trio.lowlevel.Task]


class _Workers:
    """The workers and their queue.  Every job submitted puts one item in the
    queue: the job itself, or for a job that goes first, ``None`` while the job
    waits in ``_first``; a worker that takes an item runs one job of ``_first``
    (if any waits) before the item's own job."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._first: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job (or about to take one)

    def submit(self, job: _Job, *, first: bool = False) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            else:
                start = self._threads < MAX_WORKERS
                if start:
                    self._threads += 1
        if first:
            self._first.append(job)
            self._jobs.put(None)
        else:
            self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name="mta-worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                item = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue  # a job is on its way to this idle thread
            try:
                ahead = self._first.popleft()
            except IndexError:
                pass  # its item was taken by a worker before this one
            else:
                _run(ahead)
                del ahead
            if item is not None:
                _run(item)
                del item
            with self._lock:
                self._idle += 1


def _run(job: _Job) -> None:
    fn, context, token, task = job
    result = outcome.capture(context.run, fn)
    del fn, context
    with contextlib.suppress(trio.RunFinishedError):  # nobody is left to wait
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)


_WORKERS = _Workers()


def _forked() -> None:
    """In a forked child the workers are gone (only the forking thread goes on):
    start with none (a host program that forks after an in-process server ran)."""
    global _WORKERS
    _WORKERS = _Workers()


os.register_at_fork(after_in_child=_forked)


def _no_abort(raise_cancel: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # the thread cannot be stopped: wait for it


async def _call(fn: Callable[[], T], first: bool) -> T:
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    job = (fn, contextvars.copy_context(), trio.lowlevel.current_trio_token(), task)
    _WORKERS.submit(job, first=first)
    # the worker's outcome is unwrapped by trio: its value returned, its error raised
    result: T = await trio.lowlevel.wait_task_rescheduled(_no_abort)
    return result


async def run_sync(fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run ``fn(*args)`` in a worker thread and return its result (or raise its error)."""
    return await _call((lambda: fn(*args)) if args else fn, False)


async def run_sync_first(fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """:func:`run_sync`, ahead of the jobs waiting for a worker."""
    return await _call((lambda: fn(*args)) if args else fn, True)
