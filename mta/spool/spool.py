"""The spool as the trio side of mta sees it: open (with recovery), transactions,
and the scheduler's read / update calls.  Blocking work runs in worker threads.

::

    spool = await Spool.open(root, compression=False, key=None)
    txn = await spool.begin()
    writer = await txn.open_message()
    writer.write(b"...")                      # synchronous, cheap
    envelopes = await txn.commit([envelope])  # durable when it returns: say 250
    # or: await txn.abort()

Group commit needs no nursery: concurrent commits elect a leader among
themselves (:mod:`mta.spool.commit`).  Removals and updates of envelopes
record the outcome of a delivery (until then a crash would repeat it): they go
ahead of the other work waiting for a worker thread, and removals of different
messages run in parallel.  Message ids are random but runs of
:data:`BUCKET_RUN` consecutive transactions share their top byte, i.e. their
queue bucket, so a batch of concurrent commits fsyncs one or two bucket
directories instead of one per message; over time the buckets fill evenly.
The spool keeps the ids of queued and open messages in memory (from recovery,
commits and deletions), so a new id never needs a look at the disk and a
commit can never replace a queued message.

In memory, for ``m`` queued messages: that set of ids (O(m) memory, O(1) per
:meth:`Spool.begin`, commit and removal) and, from :meth:`Spool.open` until
the first :meth:`Spool.queued`, what recovery read of each envelope
(:class:`~mta.spool.recovery.Queued`).  Nothing else is kept per message or
envelope: every read and update goes to the files, O(k) in the ``k``
envelopes of the message concerned and independent of the queue's size;
only :meth:`Spool.message_ids`, :meth:`Spool.envelopes` and a
:meth:`Spool.queued` after a change read the whole queue.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import BinaryIO

import trio

from mta import threads
from mta.envelope import Envelope
from mta.errors import SpoolError
from mta.spool import crypto
from mta.spool.commit import CommitStats, GroupCommitter
from mta.spool.paths import SpoolPaths
from mta.spool.recovery import Queued, RecoveryReport, recover
from mta.spool.store import Store
from mta.spool.transaction import Transaction

__all__ = ["BUCKET_RUN", "Spool"]

_MSGID_TRIES = 64
BUCKET_RUN = 1024  # consecutive transactions that share a queue bucket


class Spool:
    """One spool directory, opened and recovered."""

    def __init__(
        self, paths: SpoolPaths, *, compression: bool, key: bytes | None, report: RecoveryReport
    ) -> None:
        self.paths = paths
        self.compression = compression
        self.key = key
        self.recovery = report
        self.stats = CommitStats()
        self.store = Store(paths, compress=compression, key=key)
        self._committer = GroupCommitter(paths, self.stats)
        self._taken: set[int] = set()  # msgids of queued messages and open transactions
        self._random = random.Random(os.urandom(32))  # ids must be distinct, not secret
        self._bucket = self._random.getrandbits(8)
        self._bucket_left = BUCKET_RUN
        # the envelopes recovery decoded, for the first queued() while the
        # queue is unchanged (reading them again doubled the time of a start)
        self._recovered: list[Queued] | None = report.queued
        report.queued = []

    def set_compression(self, compression: bool) -> None:
        """Compress the messages and envelopes written from now on, or not
        (``queue compression`` changed by a reload; either kind reads back)."""
        self.compression = compression
        self.store.compress = compression

    @classmethod
    async def open(
        cls, root: str | os.PathLike[str], *, compression: bool = False, key: bytes | None = None
    ) -> Spool:
        """Create the layout if needed, check it is one filesystem, run startup
        recovery (:attr:`recovery` holds the summary).  ``key``: exactly 32 bytes
        for queue encryption (ValueError otherwise).  Raises SpoolError."""
        if key is not None:
            crypto.check_key(key)
        paths = SpoolPaths(os.fspath(root))

        def prepare() -> tuple[RecoveryReport, list[int]]:
            paths.create()
            report = recover(paths, key)
            return report, Store(paths, compress=compression, key=key).message_ids()

        report, queued = await trio.to_thread.run_sync(prepare)
        spool = cls(paths, compression=compression, key=key, report=report)
        spool._taken.update(queued)
        return spool

    # -- write path ----------------------------------------------------------

    async def begin(self) -> Transaction:
        """A new transaction with a fresh random msgid (no disk I/O yet: the
        message is created when it grows or at commit, whose errors say why)."""
        await trio.lowlevel.checkpoint()
        if self._bucket_left == 0:
            self._bucket, self._bucket_left = (self._bucket + 1) % 256, BUCKET_RUN
        self._bucket_left -= 1
        for _ in range(_MSGID_TRIES):
            msgid = self._bucket << 24 | self._random.getrandbits(24)
            if msgid != 0 and msgid not in self._taken:
                break
        else:
            raise SpoolError("spool: no free message id")
        self._taken.add(msgid)
        return Transaction(
            msgid=msgid,
            paths=self.paths,
            compress=self.compression,
            key=self.key,
            committer=self._committer,
            stats=self.stats,
            release=self._release,
        )

    def _release(self, msgid: int, committed: Sequence[Envelope] | None) -> None:
        """A transaction is over: a committed message keeps its id until it goes,
        and the store remembers its envelopes (its delivery and the removal of
        each envelope need not read them back from the file)."""
        if committed is not None:
            self._recovered = None
            self.store.remember(msgid, committed)
        else:
            self._taken.discard(msgid)

    # -- read / update path (scheduler, deliveries, mtactl) ------------------

    async def message_ids(self) -> list[int]:
        """Every committed message, in id order."""
        return await threads.run_sync(self.store.message_ids)

    async def envelopes(self) -> list[Envelope]:
        """Every committed envelope (unloadable ones are logged and skipped)."""
        return await threads.run_sync(lambda: list(self.store.iter_envelopes()))

    async def message_envelopes(self, msgid: int) -> list[Envelope]:
        """The envelopes of one message still in the queue (unloadable ones are
        logged and skipped); empty when the message is gone."""
        return await threads.run_sync(self.store.message_envelopes, msgid)

    async def queued(self) -> list[Queued]:
        """What the scheduler needs of every committed envelope, by message id
        then envelope id.  The first call after :meth:`open`, if nothing
        changed the queue meanwhile, returns what recovery read; later ones
        read the queue."""
        recovered, self._recovered = self._recovered, None
        if recovered is not None:
            await trio.lowlevel.checkpoint()
            return recovered
        return await threads.run_sync(
            lambda: [Queued.of(envelope) for envelope in self.store.iter_envelopes()]
        )

    async def load_envelope(self, evpid: int) -> Envelope:
        """One envelope; SpoolNotFound, CorruptEnvelope, SpoolError."""
        return await threads.run_sync(self.store.load_envelope, evpid)

    async def update_envelope(self, envelope: Envelope) -> None:
        """Replace the stored copy of ``envelope`` durably; SpoolNotFound if gone.
        Ahead of the other work waiting for a worker thread, as removals."""
        self._recovered = None
        await threads.run_sync_first(self.store.update_envelope, envelope)

    async def delete_envelope(self, evpid: int) -> bool:
        """Remove an envelope (and its message with the last one; returns whether),
        ahead of the other work waiting for a worker thread (new deliveries,
        lookups...): a delivery done is repeated by a crash until this is."""
        self._recovered = None
        gone = await threads.run_sync_first(self.store.delete_envelope, evpid)
        if gone:
            self._taken.discard(evpid >> 32)
        return gone

    async def open_message(self, msgid: int) -> BinaryIO:
        """The verified content of a message as a binary stream (blocking reads:
        read it in a worker thread).  SpoolNotFound, CorruptMessage, SpoolError."""
        return await threads.run_sync(self.store.open_message, msgid)

    async def open_message_sized(self, msgid: int) -> tuple[BinaryIO, int]:
        """:meth:`open_message` and the content's size in octets (known from
        opening it: the relay's ``SIZE=`` costs no second read)."""
        return await threads.run_sync(self.store.open_message_sized, msgid)

    async def open_message_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
        """:meth:`open_head` in one trip to a worker thread."""
        return await threads.run_sync(self.open_head, msgid, size)

    def open_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]:
        """The message's content stream and its first ``size`` bytes read; the
        stream is positioned after them (blocking: for a worker thread that goes
        on with the delivery)."""
        stream = self.store.open_message(msgid)
        try:
            return stream, stream.read(size)
        except BaseException:
            stream.close()
            raise

    async def quarantine(self, msgid: int, reason: str) -> str:
        """Move a message to ``corrupt/`` (logged); returns its new path.  Its id
        stays taken: recovery could find a part of it left behind."""
        self._recovered = None
        return await threads.run_sync(self.store.quarantine, msgid, reason)
