"""The offline drop: a message ``mta-sendmail`` could not hand to the daemon,
kept in ``<spool>/offline/`` until the daemon starts and re-submits it.

OpenSMTPD stores the sendmail arguments joined with ``|`` and the raw input,
and runs sendmail again as the file's owner.  We store the result instead, so
nothing is parsed twice and nothing depends on who runs the re-submission:
the envelope (sender, recipients, DSN options) and the prepared message, in a
versioned format where every variable field carries its length, so no byte of
an address or of the message can forge a field::

    mta-offline 1\\n
    created <unix seconds>\\n
    uid <uid of the writer>\\n
    body 7bit|8bitmime\\n
    sender <length>:<address>\\n          (length 0: the null sender)
    rcpt <length>:<address>\\n            (one or more)
    ret <length>:<FULL|HDRS>\\n           (optional, as envid and notify)
    message <length>\\n
    <length bytes: CRLF lines, not dot-stuffed>
    end <sha-256 of everything above, hex>\\n

Files are written as ``.<name>.tmp`` (mode 0600), fsynced, renamed to
``<nanoseconds since the epoch, 20 digits>.<random>`` (so names sort in the
order the files were written) and the directory fsynced: a file without a
leading dot is complete.  Reading checks the format, every address and the checksum, and
raises :class:`~mta.errors.SpoolCorrupt` for anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable
from typing import IO

import attrs

from mta.enqueue.addresses import AddressError, check_address
from mta.enqueue.compose import BLOCK, Content
from mta.enqueue.submit import check_dsn
from mta.errors import SpoolCorrupt

__all__ = [
    "MAGIC",
    "VERSION",
    "OfflineEnvelope",
    "OfflineFile",
    "is_offline_name",
    "read_offline",
    "write_offline",
]

MAGIC = b"mta-offline"
VERSION = 1
FIELD_MAX = 4096
RECIPIENTS_MAX = 100_000
_NUMBER_MAX = 20

_NAME = re.compile(r"[0-9]{1,20}\.[0-9a-f]{16}")


def _check_addresses(
    instance: OfflineEnvelope, attribute: attrs.Attribute[object], value: object
) -> None:
    addresses = [instance.sender, *instance.recipients] if attribute.name == "recipients" else []
    for index, address in enumerate(addresses):
        if index == 0 and not address:
            continue
        try:
            ok = check_address(address, "localhost") == address
        except AddressError:
            ok = False
        if not ok:
            raise ValueError(f"invalid address: {address!r}")
    if attribute.name == "recipients" and not instance.recipients:
        raise ValueError("no recipients")


@attrs.frozen
class OfflineEnvelope:
    """Who a kept message is from and for (addresses qualified and checked)."""

    sender: str
    recipients: tuple[str, ...] = attrs.field(validator=_check_addresses)
    uid: int
    created: int
    eight_bit: bool = False
    dsn_ret: str | None = attrs.field(default=None, validator=check_dsn)
    dsn_envid: str | None = attrs.field(default=None, validator=check_dsn)
    dsn_notify: str | None = attrs.field(default=None, validator=check_dsn)


@attrs.frozen
class OfflineFile:
    """A checked offline file: its envelope and where its message lies."""

    envelope: OfflineEnvelope
    message_offset: int
    message_length: int

    def content(self, file: IO[bytes]) -> Content:
        """The message, read from ``file`` (the same file, still open)."""
        return Content(b"", file, self.message_offset, self.message_length)


def is_offline_name(name: str) -> bool:
    """A complete offline file's name (``<digits>.<16 hex>``); temporary files
    start with a dot."""
    return _NAME.fullmatch(name) is not None


def _field(key: str, value: str) -> bytes:
    data = value.encode("utf-8")
    return f"{key} {len(data)}:".encode() + data + b"\n"


def encode_header(envelope: OfflineEnvelope, message_length: int) -> bytes:
    """Everything before the message."""
    parts = [
        MAGIC + f" {VERSION}\n".encode(),
        f"created {envelope.created}\n".encode(),
        f"uid {envelope.uid}\n".encode(),
        b"body 8bitmime\n" if envelope.eight_bit else b"body 7bit\n",
        _field("sender", envelope.sender),
        *(_field("rcpt", rcpt) for rcpt in envelope.recipients),
    ]
    for key, value in (
        ("ret", envelope.dsn_ret),
        ("envid", envelope.dsn_envid),
        ("notify", envelope.dsn_notify),
    ):
        if value is not None:
            parts.append(_field(key, value))
    parts.append(f"message {message_length}\n".encode())
    return b"".join(parts)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(directory: str, name: str, pieces: Iterable[bytes]) -> str:
    final = os.path.join(directory, name)
    temp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)
    return final


def _pieces(envelope: OfflineEnvelope, content: Content) -> Iterable[bytes]:
    digest = hashlib.sha256()
    header = encode_header(envelope, content.size)
    digest.update(header)
    yield header
    written = 0
    for block in content.blocks():
        digest.update(block)
        written += len(block)
        yield block
    if written != content.size:
        raise OSError(f"message changed size while being written ({written} != {content.size})")
    yield f"end {digest.hexdigest()}\n".encode()


def write_offline(
    directory: str, envelope: OfflineEnvelope, content: Content, *, name: str | None = None
) -> str:
    """Write ``content`` for ``envelope`` into ``directory`` atomically and durably;
    the new file's path.  ``name`` replaces an existing file of that name (the
    daemon narrowing the recipients), by default a new one is made."""
    if name is None:
        name = f"{time.time_ns():020d}.{secrets.token_hex(8)}"
    return _write_file(directory, name, _pieces(envelope, content))


class _Reader:
    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()
        self.offset = 0

    def take(self, size: int) -> bytes:
        data = self.file.read(size)
        if len(data) != size:
            raise SpoolCorrupt("offline file: truncated")
        self.digest.update(data)
        self.offset += size
        return data

    def until(self, stop: bytes, limit: int) -> bytes:
        """The bytes before the next ``stop`` byte (consumed), at most ``limit``."""
        out = bytearray()
        while True:
            byte = self.take(1)
            if byte == stop:
                return bytes(out)
            out += byte
            if len(out) > limit:
                raise SpoolCorrupt("offline file: field too long")


def _number(text: bytes) -> int:
    if not text.isdigit() or len(text) > _NUMBER_MAX or (len(text) > 1 and text[:1] == b"0"):
        raise SpoolCorrupt(f"offline file: bad number {text[:30]!r}")
    return int(text)


def _value(reader: _Reader) -> str:
    length = _number(reader.until(b":", _NUMBER_MAX))
    if length > FIELD_MAX:
        raise SpoolCorrupt("offline file: field too long")
    data = reader.take(length)
    if reader.take(1) != b"\n":
        raise SpoolCorrupt("offline file: field not terminated")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpoolCorrupt("offline file: field not UTF-8") from None


def read_offline(file: IO[bytes]) -> OfflineFile:
    """Check a whole offline file (format, addresses, checksum); SpoolCorrupt if it
    is not one this version wrote.  Blocking reads."""
    reader = _Reader(file)
    head = reader.until(b"\n", 64)
    magic, _, version = head.partition(b" ")
    if magic != MAGIC:
        raise SpoolCorrupt("offline file: not an offline message")
    if _number(version) != VERSION:
        raise SpoolCorrupt(f"offline file: unsupported version {version.decode('ascii')}")
    numbers: dict[str, int] = {}
    values: dict[str, str] = {}
    recipients: list[str] = []
    body = ""
    while True:
        key = reader.until(b" ", 16).decode("ascii", "replace")
        if key in ("created", "uid", "message"):
            if key in numbers:
                raise SpoolCorrupt(f"offline file: {key} given twice")
            numbers[key] = _number(reader.until(b"\n", _NUMBER_MAX))
            if key == "message":
                break
        elif key == "body":
            if body:
                raise SpoolCorrupt("offline file: body given twice")
            body = reader.until(b"\n", 16).decode("ascii", "replace")
            if body not in ("7bit", "8bitmime"):
                raise SpoolCorrupt(f"offline file: bad body {body!r}")
        elif key == "rcpt":
            recipients.append(_value(reader))
            if len(recipients) > RECIPIENTS_MAX:
                raise SpoolCorrupt("offline file: too many recipients")
        elif key in ("sender", "ret", "envid", "notify"):
            if key in values:
                raise SpoolCorrupt(f"offline file: {key} given twice")
            values[key] = _value(reader)
        else:
            raise SpoolCorrupt(f"offline file: unknown field {key[:16]!r}")
    missing = {"created", "uid"} - numbers.keys()
    if missing or "sender" not in values or not body:
        raise SpoolCorrupt("offline file: incomplete envelope")
    try:
        envelope = OfflineEnvelope(
            sender=values["sender"],
            recipients=tuple(recipients),
            uid=numbers["uid"],
            created=numbers["created"],
            eight_bit=body == "8bitmime",
            dsn_ret=values.get("ret"),
            dsn_envid=values.get("envid"),
            dsn_notify=values.get("notify"),
        )
    except ValueError as exc:
        raise SpoolCorrupt(f"offline file: {exc}") from None
    offset, length = reader.offset, numbers["message"]
    left = length
    while left:
        left -= len(reader.take(min(BLOCK, left)))
    expected = reader.digest.hexdigest()
    trailer = file.read(len("end ") + len(expected) + 2)
    if trailer != f"end {expected}\n".encode():
        raise SpoolCorrupt("offline file: checksum mismatch or trailing data")
    return OfflineFile(envelope, offset, length)
