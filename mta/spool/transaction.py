"""One message being received: its ``incoming/<msgid>`` directory until commit.

Nothing touches the disk before the commit unless the message outgrows the
writer's buffer, so a small message costs one worker-thread hop of its own.

``commit`` is what allows the ``250`` after DATA: when it returns, the message
file, every envelope file and the directory entries are on stable storage
(reliability-rules 1.6).  It assigns the envelope ids, prepares in a worker
thread (message tail + fsync, envelope files + fsync, fsync of
``incoming/<msgid>``) and hands the transaction to the spool's
:class:`~mta.spool.commit.GroupCommitter` for the rename into ``queue/`` and
the shared directory fsyncs.  Any failure removes the whole transaction and
raises :class:`~mta.errors.SpoolFull` (ENOSPC / EDQUOT) or
:class:`~mta.errors.SpoolError`.
"""

from __future__ import annotations

import enum
import os
import secrets
from collections.abc import Callable, Sequence

import attrs
import trio

from mta import threads
from mta.envelope import Envelope
from mta.errors import SpoolError
from mta.spool.codec import encode_envelope
from mta.spool.commit import CommitStats, GroupCommitter
from mta.spool.fsio import create_file, fsync_dir, remove_tree, spool_error, write_file
from mta.spool.paths import MESSAGE_NAME, SpoolPaths
from mta.spool.seal import StreamEncoder, seal_buffer
from mta.spool.writer import MessageWriter

__all__ = ["Transaction", "assign_ids"]


class _State(enum.Enum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ABORTED = "aborted"


def assign_ids(msgid: int, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """The envelopes with ``msgid`` and fresh ids ``msgid << 32 | random`` (distinct, not 0)."""
    used: set[int] = set()
    result = []
    for envelope in envelopes:
        low = 0
        while low == 0 or low in used:
            low = secrets.randbits(32)
        used.add(low)
        result.append(attrs.evolve(envelope, msgid=msgid, id=msgid << 32 | low))
    return result


class Transaction:
    """A message being written; made by :meth:`mta.spool.Spool.begin`."""

    def __init__(
        self,
        *,
        msgid: int,
        paths: SpoolPaths,
        compress: bool,
        key: bytes | None,
        committer: GroupCommitter,
        stats: CommitStats,
        release: Callable[[int], None],
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
        """Make ``incoming/<msgid>/`` and its message file (blocking; run once, when
        the message outgrows its buffer or at commit)."""
        directory = self.directory
        os.mkdir(directory, 0o700)
        try:
            return create_file(os.path.join(directory, MESSAGE_NAME))
        except BaseException:
            os.rmdir(directory)
            raise

    @property
    def msgid_text(self) -> str:
        return f"{self.msgid:08x}"

    @property
    def directory(self) -> str:
        """Where the transaction lives until it is committed."""
        return self._paths.incoming_dir(self.msgid)

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
            files = await threads.run_sync(self._prepare, assigned)
        except BaseException:
            self._stats.failures += 1
            await self._give_up()
            raise
        self._stats.file_fsyncs += files
        self._stats.dir_fsyncs += 1
        try:
            await self._committer.publish(self.msgid)
        except BaseException:
            # The committer counted and cleaned up a failure; a caller cancelled while
            # waiting was withdrawn and its directory is still in incoming/.
            await self._give_up()
            raise
        self._state = _State.COMMITTED
        self._release(self.msgid)
        return assigned

    def _prepare(self, envelopes: list[Envelope]) -> int:
        """Blocking: finish the message, write the envelopes, fsync the directory.
        Returns the number of files fsynced.  On failure everything is removed."""
        directory = self.directory
        try:
            self._writer.finish()
            for envelope in envelopes:
                data = seal_buffer(
                    encode_envelope(envelope), compress=self._compress, key=self._key
                )
                write_file(os.path.join(directory, envelope.evpid_text), data)
            fsync_dir(directory)
        except OSError as exc:
            self._discard()
            raise spool_error(exc, "writing message") from exc
        except ValueError as exc:
            self._discard()
            raise SpoolError(f"spool: writing message: {exc}") from exc
        except BaseException:
            self._discard()
            raise
        return 1 + len(envelopes)

    async def _give_up(self) -> None:
        self._state = _State.ABORTED
        try:
            if self._writer.created:
                with trio.CancelScope(shield=True):
                    await threads.run_sync(self._discard)
            else:
                self._writer.close()  # nothing reached the disk
        finally:
            self._release(self.msgid)

    def _discard(self) -> None:
        self._writer.close()
        remove_tree(self.directory)

    async def abort(self) -> None:
        """Remove everything of the transaction (idempotent; a no-op once committed)."""
        if self._state in (_State.COMMITTED, _State.ABORTED, _State.COMMITTING):
            return
        await self._give_up()
