"""Startup recovery of a spool (blocking; run once before anything is queued).

- ``incoming/`` holds transactions that never committed (no client got a 250
  for them): purged.  ``temporary/`` and leftover ``*.tmp`` files: removed.
- Every committed message in ``queue/`` is checked: its file must have a valid
  trailer (:mod:`mta.spool.msgfile`), its content must match the trailer's
  CRC (a version 2 file) and decode (gzip CRC, GCM tag), every envelope in it
  and every envelope file next to it must parse and belong to it.  A message
  failing any check moves whole (its file and its envelope files) to
  ``corrupt/``: never deleted, never delivered.  A message whose envelopes
  were all deleted (a crash while removing it) is removed, and so are
  envelope files whose message is gone.
- Checking the content reads every message once (as the gzip and GCM checks
  always did; the CRC adds little CPU to that reading).  The same checks when
  a message is opened for delivery (:meth:`~mta.spool.store.Store.open_message`)
  guard against whatever happens to a file after startup.
- A message in the spool layout before message files (a directory with
  ``message`` and one file per envelope, "format 1" below) is checked the same
  way and converted (the new file gets its content CRC): the directory is
  first renamed ``<msgid>.v1`` (so a crash midway is resumed, never
  repeated), then the new file is written, fsynced and renamed into place,
  then the old directory is removed.
- Everything else is kept.  Each event is one log line on ``mta.spool``.
- What the scheduler needs of each envelope kept (:class:`Queued`) is in the
  report, so that a start decodes every envelope once: O(n) in the envelopes
  and the bytes queued.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import attrs

from mta.envelope import Envelope, EnvelopeKind
from mta.errors import CorruptEnvelope, CorruptMessage, SpoolCorrupt
from mta.log import quote
from mta.spool.fsio import create_file, fsync_dir, remove_tree, spool_error, write_all
from mta.spool.msgfile import encode_tail, read_tail
from mta.spool.paths import TEMP_SUFFIX, SpoolPaths, parse_bucket, parse_evpid, parse_msgid
from mta.spool.seal import DecodeError, decode_stream
from mta.spool.store import (
    decode_sealed_envelope,
    parse_entry,
    quarantine_files,
    quarantine_path,
    read_envelope_file,
    stream_chunks,
    verify_content,
)

__all__ = ["Quarantined", "Queued", "RecoveryReport", "recover"]

log = logging.getLogger("mta.spool")

SMALL_FILE = 256 * 1024  # message files up to this size are read whole, at once
V1_MESSAGE = "message"  # the content file of a format 1 message directory
V1_SUFFIX = ".v1"  # a format 1 message directory being converted


@attrs.frozen
class Quarantined:
    """Something moved to ``corrupt/``: where it was (relative to the spool root) and why."""

    path: str
    reason: str


@attrs.frozen
class Queued:
    """What the scheduler needs of a queued envelope (a few dozen bytes, where
    an :class:`~mta.envelope.Envelope` takes over a kilobyte: a start on a
    large queue keeps these, not the envelopes)."""

    id: int
    kind: EnvelopeKind
    ctime: int
    ttl: int
    dispatcher: str
    retry: int
    last_bounce: int

    @classmethod
    def of(cls, envelope: Envelope) -> Queued:
        e = envelope
        return cls(e.id, e.kind, e.ctime, e.ttl, e.dispatcher, e.retry, e.last_bounce)


@attrs.define
class RecoveryReport:
    """What startup recovery found."""

    kept_messages: int = 0
    kept_envelopes: int = 0
    purged: int = 0  # uncommitted transactions removed from incoming/
    removed: int = 0  # temporary files and messages left without envelopes
    quarantined: list[Quarantined] = attrs.field(factory=list)
    # the envelopes kept, as the checks decoded them, by message id then
    # envelope id (the spool hands them to the scheduler instead of reading
    # every envelope again)
    queued: list[Queued] = attrs.field(factory=list, eq=False, repr=False)


def _entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda entry: entry.name)


@contextlib.contextmanager
def _open_small(path: str) -> Iterator[tuple[BinaryIO, int]]:
    """The file at ``path`` and its size; one of at most :data:`SMALL_FILE`
    bytes is read whole at once, into memory (one read instead of the four
    that its checks make, for each message of a large queue)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > SMALL_FILE:
            yield file, size
            return
        data = file.read(size + 1)
    if len(data) != size:
        raise CorruptMessage("message file: changed while reading")
    yield io.BytesIO(data), size


def _remove(entry: os.DirEntry[str]) -> None:
    """Remove a file or a directory tree (incoming/ held directories before format 2)."""
    if entry.is_dir(follow_symlinks=False):
        remove_tree(entry.path)
    else:
        os.unlink(entry.path)


class _Recovery:
    def __init__(self, paths: SpoolPaths, key: bytes | None) -> None:
        self.paths = paths
        self.key = key
        self.report = RecoveryReport()

    def _rel(self, path: str) -> str:
        return quote(os.path.relpath(path, self.paths.root))

    def quarantine(self, path: str, reason: str) -> None:
        quarantine_path(self.paths, path, reason)
        self.report.quarantined.append(Quarantined(os.path.relpath(path, self.paths.root), reason))

    def purge_incoming(self) -> None:
        entries = _entries(self.paths.incoming)
        for entry in entries:
            _remove(entry)
            self.report.purged += 1
            log.info("spool: purge uncommitted transaction path=%s", self._rel(entry.path))
        if entries:
            fsync_dir(self.paths.incoming)

    def purge_temporary(self) -> None:
        for entry in _entries(self.paths.temporary):
            _remove(entry)
            self.report.removed += 1
            log.info("spool: remove temporary path=%s", self._rel(entry.path))

    def scan_queue(self) -> None:
        for entry in _entries(self.paths.queue):
            number = parse_bucket(entry.name)
            if number is not None and entry.is_dir(follow_symlinks=False):
                self.scan_bucket(entry.path, number)
            elif entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
                self.remove_temp(entry.path)
            else:
                self.quarantine(entry.path, "unexpected entry in queue/")

    def scan_bucket(self, path: str, number: int) -> None:
        messages: list[int] = []
        envelopes: dict[int, list[int]] = {}
        old: dict[int, list[str]] = {}  # format 1 directories, by msgid
        for entry in _entries(path):
            name = entry.name
            is_file = entry.is_file(follow_symlinks=False)
            is_dir = entry.is_dir(follow_symlinks=False)
            msgid, evpid = parse_entry(name)
            if name.endswith(V1_SUFFIX) and is_dir:
                msgid = parse_msgid(name.removesuffix(V1_SUFFIX))
            if name.endswith(TEMP_SUFFIX) and is_file:
                self.remove_temp(entry.path)
            elif msgid is not None and msgid >> 24 != number:
                self.quarantine(entry.path, "message in the wrong bucket")
            elif evpid is not None and evpid >> 56 != number:
                self.quarantine(entry.path, "envelope in the wrong bucket")
            elif msgid is not None and is_file:
                messages.append(msgid)
            elif msgid is not None and is_dir:
                # a converted one (.v1) sorts after the plain name
                old.setdefault(msgid, []).insert(0, name)
            elif evpid is not None and is_file:
                envelopes.setdefault(evpid >> 32, []).append(evpid)
            else:
                self.quarantine(entry.path, "unexpected entry in a queue bucket")
        for msgid, names in old.items():
            first, *others = names
            for other in others:  # cannot happen unless someone copied things around
                self.quarantine(os.path.join(path, other), "second copy of a message")
            if msgid in messages:  # converted just before a crash: the old copy is done with
                self.remove_old(os.path.join(path, first))
            elif self.convert(path, first, msgid):
                messages.append(msgid)
        for msgid in sorted(messages):
            self.check_message(path, msgid, envelopes.pop(msgid, []))
        for evpids in envelopes.values():
            for evpid in evpids:
                orphan = os.path.join(path, f"{evpid:016x}")
                os.unlink(orphan)
                self.report.removed += 1
                log.info("spool: remove envelope of a removed message path=%s", self._rel(orphan))

    def remove_temp(self, path: str) -> None:
        os.unlink(path)
        self.report.removed += 1
        log.info("spool: remove temporary path=%s", self._rel(path))

    def remove_old(self, path: str) -> None:
        remove_tree(path)
        log.info("spool: remove converted message path=%s", self._rel(path))

    def check_message(self, bucket: str, msgid: int, overrides: list[int]) -> None:
        path = os.path.join(bucket, f"{msgid:08x}")
        names = [f"{msgid:08x}", *(f"{evpid:016x}" for evpid in overrides)]
        try:
            live = self.check_files(bucket, msgid, overrides)
        except SpoolCorrupt as exc:
            self.quarantine_message(bucket, names, msgid, str(exc))
            return
        if not live:
            for name in names:
                os.unlink(os.path.join(bucket, name))
            self.report.removed += 1
            log.info("spool: remove message without envelopes path=%s", self._rel(path))
            return
        self.report.kept_messages += 1
        self.report.kept_envelopes += len(live)
        self.report.queued.extend(Queued.of(envelope) for envelope in live)

    def check_files(self, bucket: str, msgid: int, overrides: list[int]) -> list[Envelope]:
        """Check a message and its envelope files; return its live envelopes
        (an envelope file's copy where there is one), in id order.  Raises
        :class:`SpoolCorrupt` for anything wrong."""
        with _open_small(os.path.join(bucket, f"{msgid:08x}")) as (file, size):
            tail = read_tail(file, size)
            live: dict[int, Envelope] = {}
            for blob in tail.envelopes:
                envelope = decode_sealed_envelope(blob, self.key)
                if envelope.msgid != msgid or envelope.id in live:
                    raise CorruptEnvelope(f"envelope {envelope.id:016x} of another message")
                live[envelope.id] = envelope
            verify_content(file, tail, self.key)
        deleted = []
        for evpid in overrides:
            if evpid not in live:
                raise CorruptEnvelope(f"envelope file {evpid:016x} of an unknown envelope")
            envelope_path = os.path.join(bucket, f"{evpid:016x}")
            if os.lstat(envelope_path).st_size == 0:
                deleted.append(evpid)
            else:
                live[evpid] = read_envelope_file(envelope_path, self.key, evpid)
        for evpid in deleted:
            del live[evpid]
        return [live[evpid] for evpid in sorted(live)]

    def quarantine_message(self, bucket: str, names: list[str], msgid: int, reason: str) -> None:
        quarantine_files(self.paths, bucket, names, f"{msgid:08x}", reason)
        where = os.path.relpath(os.path.join(bucket, f"{msgid:08x}"), self.paths.root)
        self.report.quarantined.append(Quarantined(where, reason))

    # -- messages of format 1 ------------------------------------------------

    def check_old(self, path: str, msgid: int) -> list[int]:
        """The envelope ids of the format 1 message directory ``path``, checked.
        Raises :class:`SpoolCorrupt` (its reason) when anything is wrong."""
        evpids: list[int] = []
        has_message = False
        for entry in _entries(path):
            mode = entry.stat(follow_symlinks=False).st_mode
            if entry.name.endswith(TEMP_SUFFIX) and stat.S_ISREG(mode):
                self.remove_temp(entry.path)
                continue
            if not stat.S_ISREG(mode):
                raise SpoolCorrupt(f"unexpected non-file {entry.name!r}")
            if entry.name == V1_MESSAGE:
                has_message = True
                continue
            evpid = parse_evpid(entry.name)
            if evpid is None:
                raise SpoolCorrupt(f"unexpected file {entry.name!r}")
            if evpid >> 32 != msgid:
                raise SpoolCorrupt(f"envelope {entry.name} of another message")
            evpids.append(evpid)
        if evpids and not has_message:
            raise SpoolCorrupt("message file missing")
        if evpids:
            with open(os.path.join(path, V1_MESSAGE), "rb") as file:
                size = os.fstat(file.fileno()).st_size
                try:
                    for _chunk in decode_stream(file, size, self.key):
                        pass
                except DecodeError as exc:
                    raise CorruptMessage(f"message: {exc}") from None
            for evpid in evpids:
                read_envelope_file(os.path.join(path, f"{evpid:016x}"), self.key, evpid)
        return evpids

    def convert(self, bucket: str, name: str, msgid: int) -> bool:
        """Turn the format 1 directory ``bucket/name`` into a message file; False
        when there was nothing to keep (no envelopes, or quarantined)."""
        path = os.path.join(bucket, name)
        try:
            evpids = self.check_old(path, msgid)
        except SpoolCorrupt as exc:
            self.quarantine(path, str(exc))
            return False
        if not evpids:
            remove_tree(path)
            self.report.removed += 1
            log.info("spool: remove message without envelopes path=%s", self._rel(path))
            return False
        if not name.endswith(V1_SUFFIX):
            moved = path + V1_SUFFIX
            os.rename(path, moved)
            fsync_dir(bucket)
            path = moved
        sealed = []
        for evpid in sorted(evpids):
            with open(os.path.join(path, f"{evpid:016x}"), "rb") as file:
                sealed.append(file.read())
        target = os.path.join(bucket, f"{msgid:08x}")
        temp = f"{target}.{os.getpid()}{TEMP_SUFFIX}"
        fd = create_file(temp)
        try:
            length = crc = 0
            with open(os.path.join(path, V1_MESSAGE), "rb") as source:
                for chunk in stream_chunks(source, 1 << 20):
                    write_all(fd, chunk)
                    length += len(chunk)
                    crc = zlib.crc32(chunk, crc)
            write_all(fd, encode_tail(length, sealed, crc=crc))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        os.rename(temp, target)
        fsync_dir(bucket)
        remove_tree(path)
        log.info("spool: convert message to format 2 path=%s", self._rel(target))
        return True


def recover(paths: SpoolPaths, key: bytes | None) -> RecoveryReport:
    """Purge, check and quarantine as described above; blocking.  Raises
    :class:`~mta.errors.SpoolError` if the spool cannot be read or changed."""
    recovery = _Recovery(paths, key)
    try:
        recovery.purge_incoming()
        recovery.purge_temporary()
        recovery.scan_queue()
    except OSError as exc:
        raise spool_error(exc, "recovering") from exc
    report = recovery.report
    log.info(
        "spool: recovered kept=%d envelopes=%d purged=%d removed=%d quarantined=%d",
        report.kept_messages,
        report.kept_envelopes,
        report.purged,
        report.removed,
        len(report.quarantined),
    )
    return report
