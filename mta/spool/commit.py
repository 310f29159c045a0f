"""Group commit: writing, fsyncing and publishing transactions in shared batches.

A committing transaction hands the committer a :class:`CommitJob`: a blocking
``write`` that leaves its ``incoming/<msgid>`` file complete and fsynced, and
a ``discard`` that removes it.  One worker-thread hop runs a whole batch:
every job's ``write`` (side by side: their fsyncs share the file system's
journal commits, :mod:`mta.spool.fanout`), the rename of each file into
``queue/<bucket>/``, then one fsync of each bucket the batch touched (side by
side too).  The 256 buckets are made when the
spool is opened; one found missing (removed by hand) is made again, and
``queue/`` is fsynced by every batch that uses it until one such fsync worked.
``incoming/`` itself is never fsynced: a name left there by a crash is purged
at startup, and the queue entry is what counts.

Leader / follower, no background task: a committer that finds one of the
:data:`LANES` idle becomes a leader and runs every job waiting at that moment
in one thread hop; commits that arrive while every lane is busy wait, and when
a batch is done its leader wakes the first of them to lead the next batch.
So a commit never waits behind a batch while a lane is free (at low
concurrency each one goes at once, their fsyncs overlapping), and under load
the batches grow instead of the number of thread hops.  A caller
cancelled while still waiting is simply withdrawn; once its job is in a batch
(or it was made leader), it waits for the batch, shielded, so the queue never
stalls and nothing is left half-published, and a job the batch published is
committed (the cancellation reaches the caller at its next checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import attrs
import trio

from mta import threads
from mta.errors import SpoolError
from mta.spool.fanout import run_all
from mta.spool.fsio import fsync_dir, spool_error
from mta.spool.paths import SpoolPaths

__all__ = ["LANES", "MAX_BATCH", "CommitJob", "CommitStats", "GroupCommitter"]

MAX_BATCH = 512
LANES = 4  # batches in flight at once


@attrs.define
class CommitStats:
    """Counters of the write path, for tests and ``mtactl show stats``."""

    commits: int = 0  # transactions published
    batches: int = 0  # publishing thread hops
    max_batch: int = 0  # the largest batch so far
    file_fsyncs: int = 0  # message files
    dir_fsyncs: int = 0  # directories (buckets, queue/)
    failures: int = 0  # commits that raised (counted by the transactions)


@attrs.frozen(eq=False)
class CommitJob:
    """One transaction to publish: its ``incoming/`` file is made complete and
    durable by ``write`` (blocking; raises OSError or SpoolError) and removed,
    whatever its state, by ``discard`` (blocking, never raises)."""

    msgid: int
    write: Callable[[], None]
    discard: Callable[[], None]


@attrs.define(eq=False)
class _Waiter:
    job: CommitJob
    wake: trio.Event = attrs.field(factory=trio.Event)
    leader: bool = False
    taken: bool = False  # in a batch being published
    finished: bool = False
    error: SpoolError | None = None


@attrs.define
class _BatchResult:
    errors: list[SpoolError | None]
    dir_fsyncs: int


class _Unsure:
    """Buckets made again after being removed by hand, not yet known to be durable
    in ``queue/``: every batch that publishes into one fsyncs ``queue/`` (the
    lanes share this, under a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: set[str] = set()

    def add(self, bucket: str) -> None:
        with self.lock:
            self.buckets.add(bucket)

    def among(self, buckets: Iterable[str]) -> set[str]:
        with self.lock:
            return self.buckets.intersection(buckets)

    def settled(self, buckets: Iterable[str]) -> None:
        with self.lock:
            self.buckets.difference_update(buckets)


def _publish(paths: SpoolPaths, jobs: Sequence[CommitJob], unsure: _Unsure) -> _BatchResult:
    """Write each job's file, rename it into the queue, then fsync the directories
    once for the whole batch.  The files are written (and fsynced) side by side,
    and so are the directories (:mod:`mta.spool.fanout`).  Blocking; a failure
    only fails the jobs it touches."""
    errors: list[SpoolError | None] = [None] * len(jobs)
    for index, raised in enumerate(run_all([job.write for job in jobs])):
        if isinstance(raised, OSError):
            errors[index] = spool_error(raised, "writing message")
        elif isinstance(raised, SpoolError):
            errors[index] = raised
        elif raised is not None:  # a bug: the whole batch fails and is taken back
            raise raised
    buckets: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        if errors[index] is not None:
            job.discard()
            continue
        bucket = paths.bucket_dir(job.msgid)
        source, target = paths.incoming_file(job.msgid), paths.message_file(job.msgid)
        try:
            try:
                os.rename(source, target)
            except FileNotFoundError:
                unsure.add(bucket)  # before it exists: no batch can miss it
                with contextlib.suppress(FileExistsError):
                    os.mkdir(bucket, 0o700)
                os.rename(source, target)
        except OSError as exc:
            errors[index] = spool_error(exc, "publishing message")
            job.discard()
            continue
        buckets.setdefault(bucket, []).append(index)

    # queue/ (when a bucket of the batch was made again) and each bucket, at once
    remade = unsure.among(buckets)
    synced = [*buckets, *([paths.queue] if remade else [])]
    outcomes = run_all([partial(fsync_dir, directory) for directory in synced])
    for directory, raised in zip(synced, outcomes, strict=True):
        if raised is not None and not isinstance(raised, OSError):
            raise raised
        if directory == paths.queue:
            affected = [index for bucket in remade for index in buckets[bucket]]
            if raised is None:
                unsure.settled(remade)
        else:
            affected = buckets[directory]
        if raised is not None:
            for index in affected:
                if errors[index] is None:
                    errors[index] = spool_error(raised, "syncing queue directory")
    for indexes in buckets.values():
        for index in indexes:
            if errors[index] is not None:  # renamed but not known durable: take it back out
                with contextlib.suppress(OSError):
                    os.unlink(paths.message_file(jobs[index].msgid))
    return _BatchResult(errors, len(synced))


def _take_back(paths: SpoolPaths, jobs: Sequence[CommitJob]) -> None:
    """Remove every trace of ``jobs``, wherever the failed batch left them."""
    for job in jobs:
        job.discard()
        with contextlib.suppress(OSError):
            os.unlink(paths.message_file(job.msgid))


class GroupCommitter:
    """Publishes prepared transactions of one spool, batching concurrent ones."""

    def __init__(self, paths: SpoolPaths, stats: CommitStats, lanes: int | None = None) -> None:
        self._paths = paths
        self._stats = stats
        self._lanes = LANES if lanes is None else lanes
        self._pending: list[_Waiter] = []
        self._running = 0  # batches in flight (leaders)
        self._unsure = _Unsure()

    async def publish(self, job: CommitJob) -> None:
        """Write and publish ``job``; when this returns it is durable in the queue.
        On failure (:class:`SpoolError`) nothing of it is left.  Cancelled while
        still waiting, the job is withdrawn untouched: the caller discards it."""
        waiter = _Waiter(job)
        self._pending.append(waiter)
        if self._running < self._lanes:
            self._running += 1
            waiter.leader = True
        while not waiter.finished:
            if waiter.leader:
                await self._lead()
            else:
                await self._follow(waiter)
        if waiter.error is not None:
            raise waiter.error

    async def _follow(self, waiter: _Waiter) -> None:
        try:
            await waiter.wake.wait()
        except trio.Cancelled:
            if not waiter.leader and not waiter.taken:
                self._pending.remove(waiter)  # never published: the caller cleans up
                raise
            with trio.CancelScope(shield=True):
                while not waiter.finished:
                    if waiter.leader:
                        await self._lead()
                    else:
                        await waiter.wake.wait()
            if waiter.error is not None:
                raise
            # Published: the commit stands (its id must stay taken), as a cancelled
            # leader's does; the caller's next checkpoint raises the cancellation.

    async def _lead(self) -> None:
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        for waiter in batch:
            waiter.taken = True
        jobs = [waiter.job for waiter in batch]
        try:
            # Shielded: the leader always sees its batch through, whoever is cancelled.
            with trio.CancelScope(shield=True):
                result = await threads.run_sync(_publish, self._paths, jobs, self._unsure)
        except Exception as exc:  # a bug, not an OSError: fail the batch, keep going
            result = _BatchResult(
                [SpoolError(f"spool: publishing failed: {exc!r}") for _ in batch], 0
            )
            with trio.CancelScope(shield=True):
                await threads.run_sync(_take_back, self._paths, jobs)
        self._finish(batch, result)

    def _finish(self, batch: list[_Waiter], result: _BatchResult) -> None:
        stats = self._stats
        stats.batches += 1
        stats.max_batch = max(stats.max_batch, len(batch))
        stats.dir_fsyncs += result.dir_fsyncs
        for waiter, error in zip(batch, result.errors, strict=True):
            waiter.finished = True
            waiter.error = error
            if error is None:  # failures are counted by the transaction
                stats.commits += 1
                stats.file_fsyncs += 1
            waiter.wake.set()
        if self._pending:  # the lane goes to the first waiting commit
            successor = self._pending[0]
            successor.leader = True
            successor.wake.set()
        else:
            self._running -= 1
