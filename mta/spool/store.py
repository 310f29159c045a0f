"""Reading and updating committed messages and envelopes (blocking, synchronous).

The scheduler and deliveries use it through :class:`mta.spool.Spool` (which
runs these calls in worker threads); ``mtactl`` can use it directly on a spool
whose daemon is down.

A committed message is one file (:mod:`mta.spool.msgfile`) holding its
content and the envelopes as they were at commit.  A later change to an
envelope is a file of its own next to it, ``<evpid>``, which supersedes the
copy in the message file: an update writes it durably (temporary file, fsync,
rename, directory fsync, like OpenSMTPD's ``envelope_update``); a deletion
makes it empty, without an fsync (delivery is at-least-once: a deletion lost
in a crash means a duplicate, never a loss).  Deleting the last envelope
removes the message file, then the envelope files.

Message content handed out is verified when it is opened, before a byte of
it leaves: the content CRC of the trailer (:func:`~mta.spool.msgfile.check_content`),
and the gzip CRC or GCM tag of encoded content.  A message failing any of
them raises :class:`~mta.errors.CorruptMessage` from :meth:`Store.open_message`,
so every reader (local deliveries, relaying, bounces, ``mtactl show
message``) refuses it alike.  Small messages are read once, into memory;
larger ones are checked in a first pass over the file (in the page cache
then) and streamed in a second, which checks again as it goes and raises
:class:`~mta.errors.CorruptMessage` instead of handing out the last bytes if
the file changed in between.

Costs: loading, updating or deleting one of the ``k`` envelopes of a message
is O(1) in decodes and system calls once the message is remembered
(:mod:`mta.spool.index`: its envelopes decoded once, its deletions known),
O(k) the first time; nothing depends on the number of messages queued but
:meth:`Store.message_ids` and :meth:`Store.iter_envelopes`, which list them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import stat
import threading
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import BinaryIO

from mta import threads
from mta.envelope import Envelope
from mta.errors import CorruptEnvelope, CorruptMessage, SpoolError, SpoolNotFound
from mta.log import quote
from mta.spool import crypto
from mta.spool.codec import MAX_SIZE, decode_envelope, encode_envelope
from mta.spool.fsio import fsync_dir, spool_error, write_file
from mta.spool.index import Known, MessageIndex
from mta.spool.msgfile import Tail, check_content, read_tail, verify_crc
from mta.spool.paths import TEMP_SUFFIX, SpoolPaths, parse_bucket, parse_evpid, parse_msgid
from mta.spool.seal import GZIP_MAGIC, DecodeError, decode_stream, open_buffer, seal_buffer

__all__ = [
    "IN_MEMORY_LIMIT",
    "LOCK_STRIPES",
    "RAW_IN_MEMORY_LIMIT",
    "READ_CHUNK",
    "Store",
    "decode_sealed_envelope",
    "read_chunks",
    "read_envelope_file",
    "read_message_tail",
    "stream_chunks",
    "verify_content",
]

log = logging.getLogger("mta.spool")

IN_MEMORY_LIMIT = 4 << 20  # encoded messages up to this size are decoded into memory
RAW_IN_MEMORY_LIMIT = 256 * 1024  # raw messages up to this size are read once, into memory
LOCK_STRIPES = 64  # messages whose ids are equal modulo this share a lock
READ_CHUNK = 64 * 1024


def stream_chunks(stream: BinaryIO, size: int = READ_CHUNK) -> Iterator[bytes]:
    """The rest of ``stream`` (a message :meth:`Store.open_message` gave) in chunks."""
    while chunk := stream.read(size):
        yield chunk


async def read_chunks(stream: BinaryIO, size: int = READ_CHUNK) -> AsyncIterator[bytes]:
    """:func:`stream_chunks` for trio code: each blocking read in a worker thread."""
    while chunk := await threads.run_sync(stream.read, size):
        yield chunk


def decode_sealed_envelope(data: bytes, key: bytes | None, evpid: int | None = None) -> Envelope:
    """An envelope as an envelope file (or a message file's section) holds it;
    with ``evpid``, it must be that envelope.  Raises :class:`CorruptEnvelope`."""
    if len(data) > 4 * MAX_SIZE:
        raise CorruptEnvelope("envelope: file too large")
    try:
        plain = open_buffer(data, key=key, limit=MAX_SIZE)
    except DecodeError as exc:
        raise CorruptEnvelope(f"envelope: {exc}") from None
    envelope = decode_envelope(plain)
    if evpid is not None and envelope.id != evpid:
        raise CorruptEnvelope(f"envelope: file {evpid:016x} holds envelope {envelope.id:016x}")
    return envelope


def read_envelope_file(path: str, key: bytes | None, evpid: int | None = None) -> Envelope:
    """Load the envelope file at ``path``; with ``evpid``, it must be that envelope.
    Raises FileNotFoundError, OSError or :class:`CorruptEnvelope`."""
    with open(path, "rb") as file:
        data = file.read(4 * MAX_SIZE + 1)
    return decode_sealed_envelope(data, key, evpid)


def read_message_tail(path: str) -> Tail:
    """The trailer and sealed envelopes of the message file at ``path``.
    Raises FileNotFoundError, OSError or :class:`CorruptMessage`."""
    with open(path, "rb") as file:
        return read_tail(file, os.fstat(file.fileno()).st_size)


def _is_encoded(first: bytes) -> bool:
    return bool(first) and first[0] in (crypto.VERSION, GZIP_MAGIC[0])


def verify_content(file: BinaryIO, tail: Tail, key: bytes | None) -> None:
    """Check the content of the message file ``file`` without keeping it: its
    CRC (a version 2 file), then its gzip CRC or GCM tag if it is encoded.
    Raises OSError or :class:`CorruptMessage`."""
    check_content(file, tail)
    file.seek(0)
    if not _is_encoded(file.read(1)):
        return
    file.seek(0)
    try:
        for _chunk in decode_stream(file, tail.content_length, key):
            pass
    except DecodeError as exc:
        raise CorruptMessage(f"message: {exc}") from None


def _read_stored(file: BinaryIO, tail: Tail) -> bytes:
    """The content section of a message file as stored, checked against its CRC."""
    file.seek(0)
    data = file.read(tail.content_length)
    if len(data) != tail.content_length:
        raise CorruptMessage("message file: changed or truncated while reading")
    if tail.content_crc is not None:
        verify_crc(zlib.crc32(data), tail.content_crc)
    return data


class _DecodedReader(io.RawIOBase):
    """A readable stream over the decoded content of an already verified file; it
    checks again as it goes and raises :class:`CorruptMessage` if the file changed."""

    def __init__(self, file: BinaryIO, size: int, key: bytes | None) -> None:
        super().__init__()
        self._file = file
        self._chunks = decode_stream(file, size, key)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                chunk = next(self._chunks, None)
            except DecodeError as exc:
                raise CorruptMessage(f"message: {exc}") from None
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _RawReader(io.RawIOBase):
    """The first ``length`` bytes of a raw (unencoded) message file, checked
    already; with ``crc``, it checks them again as they go and raises
    :class:`CorruptMessage` rather than hand out the last of them if they changed."""

    def __init__(self, file: BinaryIO, length: int, crc: int | None) -> None:
        super().__init__()
        self._file = file
        self._left = length
        self._expected = crc
        self._crc = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        with memoryview(buffer) as view:
            part = view[: min(len(view), self._left)]
            count = int(self._file.readinto(part))  # type: ignore[attr-defined]
            if count <= 0:
                raise CorruptMessage("message file: changed or truncated while reading")
            self._crc = zlib.crc32(part[:count], self._crc)
        self._left -= count
        if self._left == 0 and self._expected is not None:
            verify_crc(self._crc, self._expected)
        return count

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class Store:
    """Committed messages and envelopes of one spool."""

    def __init__(self, paths: SpoolPaths, *, compress: bool, key: bytes | None) -> None:
        self.paths = paths
        self.compress = compress
        self.key = key
        # updates and deletions of one message must not interleave (the last
        # deletion removes the message); those of different messages may, and
        # do: a delivery is repeated by a crash until its envelope is removed
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))
        self._index = MessageIndex()  # the committed envelopes of messages used last

    def _lock(self, msgid: int) -> threading.Lock:
        """The lock of message ``msgid`` (shared with a few other messages)."""
        return self._locks[msgid % LOCK_STRIPES]

    # -- listing -------------------------------------------------------------

    def message_ids(self) -> list[int]:
        """Every committed message, in id order."""
        result = []
        for bucket in _listdir(self.paths.queue):
            number = parse_bucket(bucket)
            if number is None:
                continue
            for name in _listdir(os.path.join(self.paths.queue, bucket)):
                msgid = parse_msgid(name)
                if msgid is not None and msgid >> 24 == number:
                    result.append(msgid)
        return sorted(result)

    def _tail(self, msgid: int) -> Tail:
        try:
            return read_message_tail(self.paths.message_file(msgid))
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no message {msgid:08x}") from None
        except OSError as exc:
            raise spool_error(exc, "reading message") from exc

    def _committed(self, msgid: int) -> dict[int, Envelope]:
        """Every envelope the message had at commit, by id (remembered: see
        :mod:`mta.spool.index`)."""
        return self._known(msgid).envelopes

    def _known(self, msgid: int) -> Known:
        known = self._index.get(msgid)
        if known is None:
            known = self._index.put(msgid, self._decode_committed(msgid))
        return known

    def remember(self, msgid: int, envelopes: Sequence[Envelope]) -> None:
        """The envelopes ``msgid`` was just committed with (as the file holds them)."""
        self._index.put(msgid, {envelope.id: envelope for envelope in envelopes})

    def _decode_committed(self, msgid: int) -> dict[int, Envelope]:
        """Every envelope the message had at commit, by id, read from its file."""
        result = {}
        for blob in self._tail(msgid).envelopes:
            envelope = decode_sealed_envelope(blob, self.key)
            if envelope.msgid != msgid:
                raise CorruptEnvelope(f"envelope {envelope.id:016x} in message {msgid:08x}")
            result[envelope.id] = envelope
        return result

    def _override(self, evpid: int) -> os.stat_result | None:
        try:
            return os.lstat(self.paths.envelope_file(evpid))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise spool_error(exc, "reading envelope") from exc

    def _live_ids(self, msgid: int) -> list[int]:
        """The envelopes of ``msgid`` not deleted, in commit order; call it with
        the message's lock held (its deleted ids are remembered)."""
        known = self._known(msgid)
        if known.deleted is None:
            known.deleted = {e for e in known.envelopes if _deleted(self._override(e))}
        return [evpid for evpid in known.envelopes if evpid not in known.deleted]

    def envelope_ids(self, msgid: int) -> list[int]:
        """The envelopes of message ``msgid`` still in the queue, in id order
        (none when the message is gone)."""
        with self._lock(msgid):
            try:
                return sorted(self._live_ids(msgid))
            except SpoolNotFound:
                return []

    def message_envelopes(self, msgid: int) -> list[Envelope]:
        """The envelopes of message ``msgid`` still in the queue, in id order
        (none when the message is gone); one that cannot be loaded is logged
        and skipped.  Reads this message only, whatever the queue holds."""
        found = []
        for evpid in self.envelope_ids(msgid):
            try:
                found.append(self.load_envelope(evpid))
            except SpoolNotFound:
                continue  # removed meanwhile
            except SpoolError as exc:
                log.warning("spool: cannot load envelope evpid=%016x: %s", evpid, exc)
        return found

    def committed_envelopes(self, msgid: int) -> list[Envelope]:
        """The envelopes message ``msgid`` had at its commit, in the order they
        were committed (delivered ones too); SpoolNotFound when it is gone."""
        return list(self._committed(msgid).values())

    def iter_envelopes(self) -> Iterator[Envelope]:
        """Every committed envelope; one that cannot be loaded is logged and skipped."""
        for msgid in self.message_ids():
            try:
                committed = self._decode_committed(msgid)  # all of them: not remembered
            except SpoolNotFound:
                continue  # removed meanwhile
            except SpoolError as exc:
                log.warning("spool: cannot load message msgid=%08x: %s", msgid, exc)
                continue
            for evpid in sorted(committed):
                try:
                    found = self._load(evpid, committed)
                except SpoolError as exc:
                    log.warning("spool: cannot load envelope evpid=%016x: %s", evpid, exc)
                    continue
                if found is not None:
                    yield found

    # -- envelopes -----------------------------------------------------------

    def load_envelope(self, evpid: int) -> Envelope:
        """The envelope ``evpid``; :class:`SpoolNotFound` if it is not in the queue."""
        missing = SpoolNotFound(f"spool: no envelope {evpid:016x}")
        try:
            found = self._load(evpid, None)
        except SpoolNotFound:
            raise missing from None
        if found is None:
            raise missing
        return found

    def _load(self, evpid: int, committed: dict[int, Envelope] | None) -> Envelope | None:
        """The current envelope ``evpid`` (its file, else its committed copy from
        ``committed`` or the message file); None when it was deleted or is unknown."""
        override = self._override(evpid)
        if _deleted(override):
            return None
        if override is not None:
            try:
                return read_envelope_file(self.paths.envelope_file(evpid), self.key, evpid)
            except FileNotFoundError:
                pass  # its message went meanwhile: answered below
            except OSError as exc:
                raise spool_error(exc, "reading envelope") from exc
        if committed is None:
            committed = self._committed(evpid >> 32)
        return committed.get(evpid)

    def update_envelope(self, envelope: Envelope) -> None:
        """Replace the stored envelope ``envelope.id`` durably (temp file, fsync,
        rename, directory fsync); :class:`SpoolNotFound` if it is gone."""
        evpid = envelope.id
        path = self.paths.envelope_file(evpid)
        directory = os.path.dirname(path)
        temp = f"{path}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        data = seal_buffer(encode_envelope(envelope), compress=self.compress, key=self.key)
        with self._lock(evpid >> 32):
            if evpid not in self._live_ids(evpid >> 32):
                raise SpoolNotFound(f"spool: no envelope {evpid:016x}")
            try:
                write_file(temp, data)
                try:
                    os.rename(temp, path)
                except BaseException:
                    os.unlink(temp)
                    raise
                fsync_dir(directory)
            except OSError as exc:
                raise spool_error(exc, "updating envelope") from exc

    def delete_envelope(self, evpid: int) -> bool:
        """Remove envelope ``evpid``, and its message when it was the last one.
        Returns whether the message went too; :class:`SpoolNotFound` if it was gone."""
        msgid = evpid >> 32
        with self._lock(msgid):
            try:
                live = self._live_ids(msgid)
            except SpoolNotFound:
                raise SpoolNotFound(f"spool: no envelope {evpid:016x}") from None
            if evpid not in live:
                raise SpoolNotFound(f"spool: no envelope {evpid:016x}")
            known = self._known(msgid)
            try:
                if live != [evpid]:
                    self._mark_deleted(evpid)
                    assert known.deleted is not None  # filled by _live_ids
                    known.deleted.add(evpid)
                    return False
                self._index.drop(msgid)
                os.unlink(self.paths.message_file(msgid))
                for other in known.envelopes:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.paths.envelope_file(other))
            except OSError as exc:
                raise spool_error(exc, "removing envelope") from exc
            return True

    def _mark_deleted(self, evpid: int) -> None:
        """Make the envelope file of ``evpid`` empty (atomically, not fsynced)."""
        path = self.paths.envelope_file(evpid)
        temp = f"{path}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        try:
            os.rename(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    # -- messages ------------------------------------------------------------

    def open_message(self, msgid: int) -> BinaryIO:
        """A readable binary stream of the content of message ``msgid``, verified
        (blocking reads).  :class:`SpoolNotFound`, :class:`CorruptMessage`, SpoolError."""
        return self.open_message_sized(msgid)[0]

    def open_message_sized(self, msgid: int) -> tuple[BinaryIO, int]:
        """:meth:`open_message` and the content's size in octets (as it was
        received, before encoding), known from opening it: no second read."""
        path = self.paths.message_file(msgid)
        try:
            file = open(path, "rb")  # noqa: SIM115 - handed to the caller
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no message {msgid:08x}") from None
        except OSError as exc:
            raise spool_error(exc, "opening message") from exc
        try:
            return _open_content(file, read_tail(file, os.fstat(file.fileno()).st_size), self.key)
        except DecodeError as exc:
            file.close()
            raise CorruptMessage(f"message {msgid:08x}: {exc}") from None
        except OSError as exc:
            file.close()
            raise spool_error(exc, "reading message") from exc
        except BaseException:
            file.close()
            raise

    def message_size(self, msgid: int) -> int:
        """The size of the stored (encoded) message content."""
        return self._tail(msgid).content_length

    # -- quarantine ----------------------------------------------------------

    def quarantine(self, msgid: int, reason: str) -> str:
        """Move message ``msgid`` (its file and its envelope files) to ``corrupt/``
        and log why; returns where it went.  Nothing is deleted; it is never delivered."""
        bucket = self.paths.bucket_dir(msgid)
        prefix = f"{msgid:08x}"
        with self._lock(msgid):
            self._index.drop(msgid)
            names = [name for name in _listdir(bucket) if name.startswith(prefix)]
            if prefix not in names:
                raise SpoolNotFound(f"spool: no message {prefix}")
            return quarantine_files(self.paths, bucket, names, prefix, reason)


def _open_content(file: BinaryIO, tail: Tail, key: bytes | None) -> tuple[BinaryIO, int]:
    """The verified content of the message file ``file`` and its decoded size
    (:meth:`Store.open_message_sized`); ``file`` is closed or handed over."""
    length = tail.content_length
    file.seek(0)
    encoded = _is_encoded(file.read(1))
    if length <= (IN_MEMORY_LIMIT if encoded else RAW_IN_MEMORY_LIMIT):
        stored = _read_stored(file, tail)  # one read for the CRC and the content
        file.close()
        if not encoded:
            return io.BytesIO(stored), length
        content = b"".join(decode_stream(io.BytesIO(stored), length, key))
        return io.BytesIO(content), len(content)
    check_content(file, tail)
    file.seek(0)
    if not encoded:
        return io.BufferedReader(_RawReader(file, length, tail.content_crc), READ_CHUNK), length
    size = 0
    for chunk in decode_stream(file, length, key):
        size += len(chunk)  # verify everything before handing anything out
    file.seek(0)
    return io.BufferedReader(_DecodedReader(file, length, key), READ_CHUNK), size


def _deleted(override: os.stat_result | None) -> bool:
    """An empty envelope file marks a deleted envelope."""
    return override is not None and stat.S_ISREG(override.st_mode) and override.st_size == 0


def _free_target(paths: SpoolPaths, name: str) -> str:
    """``corrupt/<name>``, or ``corrupt/<name>.<n>`` if that is taken: never overwrite."""
    target = os.path.join(paths.corrupt, name)
    suffix = 0
    while os.path.lexists(target):
        suffix += 1
        target = os.path.join(paths.corrupt, f"{name}.{suffix}")
    return target


def _logged(paths: SpoolPaths, source: str, target: str, reason: str) -> str:
    log.warning(
        "spool: quarantine path=%s to=%s reason=%s",
        quote(os.path.relpath(source, paths.root)),
        quote(os.path.relpath(target, paths.root)),
        quote(reason),
    )
    return target


def quarantine_files(
    paths: SpoolPaths, directory: str, names: list[str], label: str, reason: str
) -> str:
    """Move the entries ``names`` of ``directory`` into a new ``corrupt/<label>``
    directory (a free name), fsync what changed, log; returns the new directory."""
    target = _free_target(paths, label)
    try:
        os.mkdir(target, 0o700)
        for name in names:
            os.rename(os.path.join(directory, name), os.path.join(target, name))
        fsync_dir(target)
        fsync_dir(paths.corrupt)
        fsync_dir(directory)
    except FileNotFoundError:
        raise SpoolNotFound(f"spool: nothing at {directory}/{label}") from None
    except OSError as exc:
        raise spool_error(exc, "quarantining") from exc
    return _logged(paths, os.path.join(directory, label), target, reason)


def quarantine_path(paths: SpoolPaths, path: str, reason: str) -> str:
    """Move ``path`` into ``corrupt/`` under a free name, fsync both directories, log."""
    target = _free_target(paths, os.path.basename(path))
    try:
        os.rename(path, target)
        fsync_dir(paths.corrupt)
        fsync_dir(os.path.dirname(path))
    except FileNotFoundError:
        raise SpoolNotFound(f"spool: nothing at {path}") from None
    except OSError as exc:
        raise spool_error(exc, "quarantining") from exc
    return _logged(paths, path, target, reason)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise spool_error(exc, "listing") from exc


def parse_entry(name: str) -> tuple[int | None, int | None]:
    """``(msgid, None)`` for a message file name, ``(None, evpid)`` for an envelope
    file name, ``(None, None)`` for anything else."""
    if len(name) == 8:
        return parse_msgid(name), None
    if len(name) == 16:
        return None, parse_evpid(name)
    return None, None
