"""Blocking calls side by side, for one batch of the group commit.

A batch publishes every message committed at about the same time
(:mod:`mta.spool.commit`).  Their fsyncs one after the other each wait for a
journal commit of their own; side by side, the file system joins them into
one (ext4 on the development VM, under load: 100 new files took 229 ms
fsynced one after the other and 7 ms fsynced at once).  :func:`run_all` runs
a batch's calls on a small set of threads and returns when all are done.

The threads are plain ones, started on the first batch of more than one call
and kept (they are idle between batches); they run only the file-system
steps handed to them, never Python code of the event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["MAX_THREADS", "run_all"]

MAX_THREADS = 32  # calls of one batch running at once (besides the caller's thread)

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="mta-fsync")
        return _pool


def _forked() -> None:
    """A forked child has none of the threads: it starts a set of its own if it needs one."""
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def run_all(calls: Sequence[Callable[[], None]]) -> list[BaseException | None]:
    """Run every call, the first in this thread and the others at the same time
    on the pool's threads; return what each raised (None when it returned),
    in order, once all are done."""
    if not calls:
        return []
    futures: list[Future[None]] = []
    if len(calls) > 1:
        pool = _threads()
        futures = [pool.submit(call) for call in calls[1:]]
    first: BaseException | None = None
    try:
        calls[0]()
    except BaseException as exc:  # handed back with the others'
        first = exc
    return [first, *(future.exception() for future in futures)]
