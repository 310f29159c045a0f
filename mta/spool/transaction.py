"""One message being received: its ``incoming/<msgid>`` file until commit.

Nothing touches the disk before the commit unless the message outgrows the
writer's buffer, so a small message is written whole by the commit.

``commit`` is what allows the ``250`` after DATA: when it returns, the message
file (content, envelopes and trailer, :mod:`mta.spool.msgfile`) is fsynced
and renamed into its queue bucket, and the bucket is fsynced (reliability-rules
1.6).  It assigns the envelope ids and encodes them on the event loop (cheap),
then hands the file to the spool's :class:`~mta.spool.commit.GroupCommitter`,
which writes, fsyncs and publishes whole batches in one worker-thread hop.
Any failure removes the whole transaction and raises
:class:`~mta.errors.SpoolFull` (ENOSPC / EDQUOT) or :class:`~mta.errors.SpoolError`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import random
from collections.abc import Callable, Sequence

import attrs
import trio

from mta import threads
from mta.envelope import Envelope
from mta.errors import SpoolError
from mta.spool.codec import encode_envelope
from mta.spool.commit import CommitJob, CommitStats, GroupCommitter
from mta.spool.fsio import create_file, spool_error
from mta.spool.msgfile import encode_tail
from mta.spool.paths import SpoolPaths
from mta.spool.seal import StreamEncoder, seal_buffer
from mta.spool.writer import MessageWriter

__all__ = ["Transaction", "assign_ids"]

_random = random.Random()  # envelope ids need to be distinct, not secret
_random.seed(os.urandom(32))


class _State(enum.Enum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ABORTED = "aborted"


def assign_ids(msgid: int, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """The envelopes with ``msgid`` and ids ``msgid << 32 | random`` (distinct, not 0):
    an envelope made with such an id already (:meth:`Transaction.new_ids`) keeps it."""
    used: set[int] = set()
    result = []
    for envelope in envelopes:
        low = envelope.id & 0xFFFFFFFF
        if envelope.msgid == msgid and envelope.id >> 32 == msgid and low and low not in used:
            used.add(low)
            result.append(envelope)
            continue
        low = 0
        while low == 0 or low in used:
            low = _random.getrandbits(32)
        used.add(low)
        result.append(attrs.evolve(envelope, msgid=msgid, id=msgid << 32 | low))
    return result


class Transaction:
    """A message being written; made by :meth:`mta.spool.Spool.begin`.

    ``release(msgid, committed)`` tells the spool the transaction is over
    (``committed``: the envelopes as committed, None when it was not)."""

    def __init__(
        self,
        *,
        msgid: int,
        paths: SpoolPaths,
        compress: bool,
        key: bytes | None,
        committer: GroupCommitter,
        stats: CommitStats,
        release: Callable[[int, Sequence[Envelope] | None], None],
    ) -> None:
        self.msgid = msgid
        self._paths = paths
        self._compress = compress
        self._key = key
        self._committer = committer
        self._stats = stats
        self._release = release
        self._writer = MessageWriter(self._create, StreamEncoder(compress=compress, key=key))
        self._state = _State.OPEN

    def _create(self) -> int:
        """Create the ``incoming/`` file (blocking; run once, when the message
        outgrows its buffer or at commit)."""
        return create_file(self.path)

    @property
    def msgid_text(self) -> str:
        return f"{self.msgid:08x}"

    @property
    def path(self) -> str:
        """Where the message lives until it is committed."""
        return self._paths.incoming_file(self.msgid)

    def new_ids(self, count: int) -> list[int]:
        """``count`` distinct envelope ids of this message, to make envelopes with."""
        lows: set[int] = set()
        while len(lows) < count:
            low = _random.getrandbits(32)
            if low:
                lows.add(low)
        return [self.msgid << 32 | low for low in lows]

    async def open_message(self) -> MessageWriter:
        """The writer of the message content (the same one on every call)."""
        self._check_open()
        return self._writer

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise RuntimeError(f"transaction {self.msgid_text} is {self._state.value}")

    async def commit(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Make the message and ``envelopes`` durable in the queue and return the
        envelopes with their ids.  Only after this returns may the client get 250."""
        self._check_open()
        if not envelopes:
            raise ValueError("a message needs at least one envelope")
        self._state = _State.COMMITTING
        assigned = assign_ids(self.msgid, envelopes)
        try:
            # The commit's only other checkpoints are shielded (a leader publishes its
            # batch whatever happens): a caller cancelled already must not publish.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                length = self._writer.seal()
                tail = encode_tail(
                    length,
                    [
                        seal_buffer(encode_envelope(e), compress=self._compress, key=self._key)
                        for e in assigned
                    ],
                    crc=self._writer.crc,
                )
            except OSError as exc:
                raise spool_error(exc, "writing message") from exc
            except ValueError as exc:
                raise SpoolError(f"spool: writing message: {exc}") from exc
            job = CommitJob(self.msgid, lambda: self._writer.finish(tail), self._discard)
            await self._committer.publish(job)
        except BaseException:
            # The committer discarded a job that failed; one withdrawn (its caller
            # cancelled while waiting) or never handed over is removed here.
            self._stats.failures += 1
            await self._give_up()
            raise
        self._state = _State.COMMITTED
        self._release(self.msgid, assigned)
        return assigned

    async def _give_up(self) -> None:
        self._state = _State.ABORTED
        try:
            if self._writer.created:
                with trio.CancelScope(shield=True):
                    await threads.run_sync(self._discard)
            else:
                self._writer.close()  # nothing reached the disk
        finally:
            self._release(self.msgid, None)

    def _discard(self) -> None:
        """Remove everything of the transaction (blocking, never raises)."""
        self._writer.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def abort(self) -> None:
        """Remove everything of the transaction (idempotent; a no-op once committed)."""
        if self._state in (_State.COMMITTED, _State.ABORTED, _State.COMMITTING):
            return
        await self._give_up()
