"""Blocking calls in worker threads for the hot paths (spool commits, lookups).

:func:`run_sync` does what ``trio.to_thread.run_sync`` does with its defaults
(the call cannot be abandoned: a cancelled caller waits for the thread, then
sees the cancellation at its next checkpoint) at about half the cost per call:
a fixed set of long-lived workers takes jobs from one queue and hands each
result back with a single ``run_sync_soon``.  No capacity limiter object, no
thread renaming, no context copy: the callables given here must not depend
on context variables.  At most :data:`MAX_WORKERS` threads run; further jobs
wait in the queue.  Idle workers exit after :data:`IDLE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple, Unpack

import outcome
import trio

__all__ = ["IDLE_SECONDS", "MAX_WORKERS", "run_sync"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MAX_WORKERS = 40  # trio.to_thread's default limit
IDLE_SECONDS = 10.0

_Job = tuple[Callable[[], Any], trio.lowlevel.TrioToken, trio.lowlevel.Task]


class _Workers:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job (or about to take one)

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            else:
                start = self._threads < MAX_WORKERS
                if start:
                    self._threads += 1
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name="mta-worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                fn, token, task = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue  # a job is on its way to this idle thread
            result = outcome.capture(fn)
            del fn
            with contextlib.suppress(trio.RunFinishedError):  # nobody is left to wait
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
            del task, result
            with self._lock:
                self._idle += 1


_WORKERS = _Workers()


def _no_abort(raise_cancel: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # the thread cannot be stopped: wait for it


async def run_sync(fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run ``fn(*args)`` in a worker thread and return its result (or raise its error)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    job = (lambda: fn(*args)) if args else fn
    _WORKERS.submit((job, trio.lowlevel.current_trio_token(), trio.lowlevel.current_task()))
    # the worker's outcome is unwrapped by trio: its value returned, its error raised
    result: T = await trio.lowlevel.wait_task_rescheduled(_no_abort)
    return result
