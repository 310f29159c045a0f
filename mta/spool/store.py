"""Reading and updating committed messages and envelopes (blocking, synchronous).

The scheduler and deliveries use it through :class:`mta.spool.Spool` (which
runs these calls in worker threads); ``mtactl`` can use it directly on a spool
whose daemon is down.  Envelope updates are durable (temporary file, fsync,
rename, directory fsync, like OpenSMTPD's ``envelope_update``); deletions are
not fsynced (delivery is at-least-once: a deletion lost in a crash means a
duplicate, never a loss).  Message content handed out is verified: a message
whose gzip CRC or GCM tag fails raises :class:`~mta.errors.CorruptMessage`
before any of it can be trusted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO

from mta.envelope import Envelope
from mta.errors import CorruptEnvelope, CorruptMessage, SpoolError, SpoolNotFound
from mta.log import quote
from mta.spool import crypto
from mta.spool.codec import MAX_SIZE, decode_envelope, encode_envelope
from mta.spool.fsio import fsync_dir, remove_tree, spool_error, write_file
from mta.spool.paths import (
    MESSAGE_NAME,
    TEMP_SUFFIX,
    SpoolPaths,
    parse_bucket,
    parse_evpid,
    parse_msgid,
)
from mta.spool.seal import GZIP_MAGIC, DecodeError, decode_stream, open_buffer, seal_buffer

__all__ = [
    "IN_MEMORY_LIMIT",
    "Store",
    "read_envelope_file",
    "verify_message_file",
]

log = logging.getLogger("mta.spool")

IN_MEMORY_LIMIT = 4 << 20  # encoded messages up to this size are decoded into memory


def read_envelope_file(path: str, key: bytes | None, evpid: int | None = None) -> Envelope:
    """Load the envelope file at ``path``; with ``evpid``, it must be that envelope.
    Raises FileNotFoundError, OSError or :class:`CorruptEnvelope`."""
    with open(path, "rb") as file:
        data = file.read(4 * MAX_SIZE + 1)
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


def _is_encoded(first: bytes) -> bool:
    return bool(first) and first[0] in (crypto.VERSION, GZIP_MAGIC[0])


def verify_message_file(path: str, key: bytes | None) -> int:
    """Decode the whole message file (gzip CRC, GCM tag) without keeping it; return its
    decoded size.  Raises FileNotFoundError, OSError or :class:`CorruptMessage`."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        total = 0
        try:
            for chunk in decode_stream(file, size, key):
                total += len(chunk)
        except DecodeError as exc:
            raise CorruptMessage(f"message: {exc}") from None
    return total


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


class Store:
    """Committed messages and envelopes of one spool."""

    def __init__(self, paths: SpoolPaths, *, compress: bool, key: bytes | None) -> None:
        self.paths = paths
        self.compress = compress
        self.key = key

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

    def envelope_ids(self, msgid: int) -> list[int]:
        """The envelopes of message ``msgid`` still in the queue, in id order."""
        ids = [parse_evpid(name) for name in _listdir(self.paths.message_dir(msgid))]
        return sorted(evpid for evpid in ids if evpid is not None and evpid >> 32 == msgid)

    def iter_envelopes(self) -> Iterator[Envelope]:
        """Every committed envelope; one that cannot be loaded is logged and skipped."""
        for msgid in self.message_ids():
            for evpid in self.envelope_ids(msgid):
                try:
                    yield self.load_envelope(evpid)
                except SpoolNotFound:
                    continue  # removed meanwhile
                except SpoolError as exc:
                    log.warning("spool: cannot load envelope evpid=%016x: %s", evpid, exc)

    # -- envelopes -----------------------------------------------------------

    def load_envelope(self, evpid: int) -> Envelope:
        """The envelope ``evpid``; :class:`SpoolNotFound` if it is not in the queue."""
        try:
            return read_envelope_file(self.paths.envelope_file(evpid), self.key, evpid)
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no envelope {evpid:016x}") from None
        except OSError as exc:
            raise spool_error(exc, "reading envelope") from exc

    def update_envelope(self, envelope: Envelope) -> None:
        """Replace the stored envelope ``envelope.id`` durably (temp file, fsync,
        rename, directory fsync); :class:`SpoolNotFound` if it is gone."""
        path = self.paths.envelope_file(envelope.id)
        directory = os.path.dirname(path)
        temp = f"{path}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        data = seal_buffer(encode_envelope(envelope), compress=self.compress, key=self.key)
        try:
            if not os.path.exists(path):
                raise SpoolNotFound(f"spool: no envelope {envelope.id:016x}")
            write_file(temp, data)
            try:
                os.rename(temp, path)
            except BaseException:
                os.unlink(temp)
                raise
            fsync_dir(directory)
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no envelope {envelope.id:016x}") from None
        except OSError as exc:
            raise spool_error(exc, "updating envelope") from exc

    def delete_envelope(self, evpid: int) -> bool:
        """Remove envelope ``evpid``, and its message when it was the last one.
        Returns whether the message went too; :class:`SpoolNotFound` if it was gone."""
        msgid = evpid >> 32
        try:
            os.unlink(self.paths.envelope_file(evpid))
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no envelope {evpid:016x}") from None
        except OSError as exc:
            raise spool_error(exc, "removing envelope") from exc
        try:
            if self.envelope_ids(msgid):
                return False
            directory = self.paths.message_dir(msgid)
            # A concurrent delete of the other last envelope may get there first.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, MESSAGE_NAME))
            try:
                os.rmdir(directory)
            except OSError:
                remove_tree(directory)  # a stray temporary file: nothing of value left
        except OSError as exc:
            raise spool_error(exc, "removing message") from exc
        return True

    # -- messages ------------------------------------------------------------

    def open_message(self, msgid: int) -> BinaryIO:
        """A readable binary stream of the content of message ``msgid``, verified
        (blocking reads).  :class:`SpoolNotFound`, :class:`CorruptMessage`, SpoolError."""
        path = self.paths.message_file(msgid)
        try:
            file = open(path, "rb")  # noqa: SIM115 - handed to the caller
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no message {msgid:08x}") from None
        except OSError as exc:
            raise spool_error(exc, "opening message") from exc
        try:
            size = os.fstat(file.fileno()).st_size
            if not _is_encoded(file.read(1)):
                file.seek(0)
                return file
            file.seek(0)
            if size <= IN_MEMORY_LIMIT:
                content = b"".join(decode_stream(file, size, self.key))
                file.close()
                return io.BytesIO(content)
            for _chunk in decode_stream(file, size, self.key):
                pass  # verify everything before handing anything out
            file.seek(0)
            return io.BufferedReader(_DecodedReader(file, size, self.key), 64 * 1024)
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
        """The size of the stored (encoded) message file."""
        try:
            return os.stat(self.paths.message_file(msgid)).st_size
        except FileNotFoundError:
            raise SpoolNotFound(f"spool: no message {msgid:08x}") from None
        except OSError as exc:
            raise spool_error(exc, "reading message") from exc

    # -- quarantine ----------------------------------------------------------

    def quarantine(self, msgid: int, reason: str) -> str:
        """Move message ``msgid`` (all of it) to ``corrupt/`` and log why; returns
        where it went.  Nothing is deleted; it is never delivered."""
        return quarantine_path(self.paths, self.paths.message_dir(msgid), reason)


def quarantine_path(paths: SpoolPaths, path: str, reason: str) -> str:
    """Move ``path`` into ``corrupt/`` under a free name, fsync both directories, log."""
    name = os.path.basename(path)
    target = os.path.join(paths.corrupt, name)
    suffix = 0
    while os.path.lexists(target):
        suffix += 1
        target = os.path.join(paths.corrupt, f"{name}.{suffix}")
    try:
        os.rename(path, target)
        fsync_dir(paths.corrupt)
        fsync_dir(os.path.dirname(path))
    except FileNotFoundError:
        raise SpoolNotFound(f"spool: nothing at {path}") from None
    except OSError as exc:
        raise spool_error(exc, "quarantining") from exc
    log.warning(
        "spool: quarantine path=%s to=%s reason=%s",
        quote(os.path.relpath(path, paths.root)),
        quote(os.path.relpath(target, paths.root)),
        quote(reason),
    )
    return target


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise spool_error(exc, "listing") from exc
