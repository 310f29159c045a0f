"""Group commit: publishing prepared transactions into ``queue/`` in shared batches.

A transaction is *prepared* on its own (its message, envelopes and
``incoming/<msgid>`` directory fsynced, in the session's own worker thread,
so many prepare in parallel).  Publishing renames ``incoming/<msgid>`` to
``queue/<bucket>/<msgid>`` and fsyncs the directories the rename changed:
``queue/`` if the bucket was just made, the bucket, and ``incoming/``.  Those
directory fsyncs are what concurrent commits share.

Leader / follower, no background task: the first committer to find the
publisher idle becomes the leader and publishes every transaction waiting at
that moment in one thread hop; commits that arrive meanwhile wait, and when the
batch is done the leader wakes the first of them to lead the next batch.  A
caller cancelled while still waiting is simply withdrawn; once its transaction
is in a batch (or it was made leader), it waits for the batch, shielded, so
the queue never stalls and nothing is left half-published.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
import trio

from mta import threads
from mta.errors import SpoolError
from mta.spool.fsio import fsync_dir, remove_tree, spool_error
from mta.spool.paths import SpoolPaths

__all__ = ["MAX_BATCH", "CommitStats", "GroupCommitter"]

MAX_BATCH = 512


@attrs.define
class CommitStats:
    """Counters of the write path, for tests and ``mtactl show stats``."""

    commits: int = 0  # transactions published
    batches: int = 0  # publishing thread hops
    max_batch: int = 0  # the largest batch so far
    file_fsyncs: int = 0  # message and envelope files
    dir_fsyncs: int = 0  # directories (incoming/<msgid>, buckets, queue/, incoming/)
    failures: int = 0  # commits that raised


@attrs.define(eq=False)
class _Waiter:
    msgid: int
    wake: trio.Event = attrs.field(factory=trio.Event)
    leader: bool = False
    taken: bool = False  # in a batch being published
    finished: bool = False
    error: SpoolError | None = None


@attrs.define
class _BatchResult:
    errors: list[SpoolError | None]
    dir_fsyncs: int


def _publish(paths: SpoolPaths, msgids: Sequence[int]) -> _BatchResult:
    """Rename each prepared transaction into the queue, then fsync the directories
    once for the whole batch.  Blocking; a failure only fails the items it touches."""
    errors: list[SpoolError | None] = [None] * len(msgids)
    buckets: dict[str, list[int]] = {}
    created = False
    for index, msgid in enumerate(msgids):
        source = paths.incoming_dir(msgid)
        bucket = paths.bucket_dir(msgid)
        target = paths.message_dir(msgid)
        try:
            try:
                os.rename(source, target)
            except FileNotFoundError:
                if os.path.isdir(bucket):
                    raise
                try:
                    os.mkdir(bucket, 0o700)
                    created = True
                except FileExistsError:
                    pass
                os.rename(source, target)
        except OSError as exc:
            errors[index] = spool_error(exc, "publishing message")
            remove_tree(source)
            continue
        buckets.setdefault(bucket, []).append(index)

    dir_fsyncs = 0

    def fail(indexes: Sequence[int], exc: OSError) -> None:
        for index in indexes:
            if errors[index] is None:
                errors[index] = spool_error(exc, "syncing queue directory")

    published = [index for indexes in buckets.values() for index in indexes]
    if created:
        try:
            dir_fsyncs += 1
            fsync_dir(paths.queue)
        except OSError as exc:
            fail(published, exc)
    for bucket, indexes in buckets.items():
        try:
            dir_fsyncs += 1
            fsync_dir(bucket)
        except OSError as exc:
            fail(indexes, exc)
    if published:
        try:
            dir_fsyncs += 1
            fsync_dir(paths.incoming)
        except OSError as exc:
            fail(published, exc)
    for index in published:
        if errors[index] is not None:  # renamed but not known durable: take it back out
            remove_tree(paths.message_dir(msgids[index]))
    return _BatchResult(errors, dir_fsyncs)


class GroupCommitter:
    """Publishes prepared transactions of one spool, batching concurrent ones."""

    def __init__(self, paths: SpoolPaths, stats: CommitStats) -> None:
        self._paths = paths
        self._stats = stats
        self._pending: list[_Waiter] = []
        self._busy = False

    async def publish(self, msgid: int) -> None:
        """Publish the prepared transaction ``msgid``; when this returns it is durable
        in the queue.  On failure (:class:`SpoolError`) nothing of it is left."""
        waiter = _Waiter(msgid)
        self._pending.append(waiter)
        if not self._busy:
            self._busy = True
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
            raise

    async def _lead(self) -> None:
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        for waiter in batch:
            waiter.taken = True
        msgids = [waiter.msgid for waiter in batch]
        try:
            # Shielded: the leader always sees its batch through, whoever is cancelled.
            with trio.CancelScope(shield=True):
                result = await threads.run_sync(_publish, self._paths, msgids)
        except Exception as exc:  # a bug, not an OSError: fail the batch, keep going
            result = _BatchResult(
                [SpoolError(f"spool: publishing failed: {exc!r}") for _ in batch], 0
            )
            for msgid in msgids:
                remove_tree(self._paths.incoming_dir(msgid))
        self._finish(batch, result)

    def _finish(self, batch: list[_Waiter], result: _BatchResult) -> None:
        stats = self._stats
        stats.batches += 1
        stats.max_batch = max(stats.max_batch, len(batch))
        stats.dir_fsyncs += result.dir_fsyncs
        for waiter, error in zip(batch, result.errors, strict=True):
            waiter.finished = True
            waiter.error = error
            if error is None:
                stats.commits += 1
            else:
                stats.failures += 1
            waiter.wake.set()
        if self._pending:
            successor = self._pending[0]
            successor.leader = True
            successor.wake.set()
        else:
            self._busy = False
